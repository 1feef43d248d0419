"""A sweep's search space: Hydra's sweep overrides as Optuna distributions.

`lr=tag(log, interval(1e-5, 3e-3))` is a log-uniform float, `gamma=choice(0.9, 0.99)` a
categorical, `network.depth=range(1, 4)` an integer range (Hydra's end is exclusive,
Optuna's inclusive, so this is 1..3). An override that names one value is fixed: every
trial gets it and records it as a user attribute. The search space is
`hydra.sweeper.params` followed by the command line's overrides; a key on both takes the
command line's. The same conventions as hydra-optuna-sweeper, so its studies carry over.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import IntervalSweep, Override, RangeSweep, Transformer
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution


def _listed(override: Override) -> CategoricalDistribution:
    return CategoricalDistribution(list(override.sweep_iterator(transformer=Transformer.encode)))


def _exact(value: Decimal) -> bool:
    return Decimal(str(float(value))) == value


def distribution(override: Override) -> BaseDistribution:
    """The Optuna distribution of one sweep override."""
    value = override.value()
    if isinstance(value, IntervalSweep):
        log = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(int(value.start), int(value.end), log=log)
        return FloatDistribution(value.start, value.end, log=log)
    if isinstance(value, RangeSweep) and not (value.shuffle or value.transformers):
        values = value.range()
        if isinstance(values, range):
            if not values:
                raise ValueError(f"{override.input_line}: the range holds no value")
            low, high = sorted((values[0], values[-1]))
            return IntDistribution(low, high, step=abs(values.step))
        count = len(list(values))
        if not count:
            raise ValueError(f"{override.input_line}: the range holds no value")
        start, step = values.start, values.step  # Decimals: exact
        last = start + (count - 1) * step
        if all(map(_exact, (start, last, step))):
            low, high = sorted((float(start), float(last)))
            return FloatDistribution(low, high, step=float(abs(step)))
    return _listed(override)  # a choice, a shuffled range, or a float range no step can hit


@dataclass
class SearchSpace:
    distributions: dict[str, BaseDistribution] = field(default_factory=dict)
    fixed: dict[str, str] = field(default_factory=dict)  # key: the value as written
    deletions: list[str] = field(default_factory=list)  # `~key` overrides, passed on as they are

    @staticmethod
    def parse(arguments: list[str]) -> SearchSpace:
        space = SearchSpace()
        for override in OverridesParser.create().parse_overrides(arguments):
            if override.is_delete():
                space.deletions.append(override.input_line)
            elif override.is_sweep_override():
                space.distributions[override.get_key_element()] = distribution(override)
            else:
                space.fixed[override.get_key_element()] = override.get_value_element_as_str()
        for key in space.fixed:  # a single value on the command line overrides a searched key
            space.distributions.pop(key, None)
        return space

    def suggest(self, trial: optuna.Trial) -> list[str]:
        """Draw the trial's values; its job's overrides."""
        for name, d in self.distributions.items():
            if isinstance(d, FloatDistribution):
                trial.suggest_float(name, d.low, d.high, step=d.step, log=d.log)
            elif isinstance(d, IntDistribution):
                trial.suggest_int(name, d.low, d.high, step=d.step, log=d.log)
            else:
                trial.suggest_categorical(name, d.choices)
        for name, value in self.fixed.items():
            trial.set_user_attr(name, value)
        values = {**trial.params, **self.fixed}
        return [*(f"{name}={value}" for name, value in values.items()), *self.deletions]

    def grid(self) -> dict[str, list]:
        """Every value of each key, for Optuna's GridSampler; ValueError for an interval."""
        grid = {}
        for name, d in self.distributions.items():
            if isinstance(d, CategoricalDistribution):
                grid[name] = list(d.choices)
            elif isinstance(d, IntDistribution) and not d.log:
                grid[name] = list(range(d.low, d.high + 1, d.step))
            elif isinstance(d, FloatDistribution) and d.step is not None:
                count = round((d.high - d.low) / d.step)
                grid[name] = [d.low + i * d.step for i in range(count)] + [d.high]
            else:
                raise ValueError(f"{name}: the grid sampler needs listed values (choice or range), not an interval")
        return grid


def without_keys(overrides: list[str], keys) -> list[str]:
    """The overrides less those that set, add or delete one of `keys`."""
    drop = set(keys)
    return [o for o in overrides if o.split("=")[0].lstrip("+~") not in drop]
