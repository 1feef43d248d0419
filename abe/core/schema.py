"""The typed config: one frozen dataclass per config group, each field with its check.

The raw Hydra config stops at the edge: `Config.from_dict(OmegaConf.to_container(cfg))`
turns it into these dataclasses once, checking every value, and nothing below the
commands sees a DictConfig. Values come from the YAML files of `conf/`; the dataclasses
hold no defaults of their own except `ADDED_LATER`, the keys that configs saved by
older runs (checkpoints, MLflow artifacts) do not have.

Objects are built from these plain values (no `_target_`): a config fetched from a
shared store names optimizers and activations from abe's tables, never code.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from numbers import Real
from typing import Any, ClassVar

from abe.core.errors import ConfigError
from abe.core.stats import STATISTICS

ACTIVATIONS = ("relu", "tanh", "elu", "gelu", "silu")
OPTIMIZERS = ("adam", "rmsprop", "sgd")
DEVICES = ("cpu", "cuda", "auto")
ENV_BACKENDS = ("sync", "async", "envpool")
LOGGERS = ("mlflow", "none")
RETURN_STD_SOURCES = ("returns", "rewards")
SEED_STATISTICS = STATISTICS
LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0

# Keys that configs saved by older runs lack, with the value that reproduces those runs.
ADDED_LATER: dict[str, Any] = {
    "n_seeds": 1,
    "seed_statistic": "mean",
    "env.threads": 0,
    "algo.lr_decay": False,
    "algo.normalize_advantage": False,
    "network.sde": False,
    "algo.sde_sample_freq": -1,
    "algo.return_std_from": "returns",
    "schedule": [],
    "pbt": None,
}
PBT_KEYS = ("lr", "gamma")  # what population-based training changes during training


def _number(v) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v)


def _integer(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _boolean(v) -> bool:
    return isinstance(v, bool)


def _one_of(options) -> Callable[[object], bool]:
    return lambda v: v in options


def rule(check: Callable[[object], bool], allowed: str, doc: str) -> Any:
    """A config field: `check(value)` must hold; `allowed` goes into the error message."""
    return field(metadata={"check": check, "allowed": allowed, "doc": doc})


POSITIVE_INT = (lambda v: _integer(v) and v >= 1, "an integer >= 1")
NON_NEGATIVE = (lambda v: _number(v) and v >= 0, "a number >= 0")
BOOLEAN = (_boolean, "true or false")


class Section:
    """What every config dataclass shares: strict conversion from plain dicts."""

    @classmethod
    def from_dict(cls, data: object, prefix: str):
        if not isinstance(data, dict):
            raise ConfigError(
                f"{prefix.rstrip('.')}: got {data!r} instead of a section of keys; a saved run config "
                f"(--config-path <run dir>/.hydra) has no config groups: set its keys, e.g. {prefix}<key>=..."
            )
        fields = {f.name: f for f in dataclasses.fields(cls) if "check" in f.metadata}
        unknown = [str(k) for k in data if k not in fields]
        if unknown:
            raise ConfigError(
                f"unknown config key '{prefix}{unknown[0]}'; {prefix.rstrip('.') or 'the top level'} has: "
                + ", ".join(fields)
            )
        values = {}
        for name, spec in fields.items():
            key = f"{prefix}{name}"
            if name not in data:
                if key not in ADDED_LATER:
                    raise ConfigError(f"{key}: missing from the config (was it deleted with ~{key}?)")
                values[name] = ADDED_LATER[key]
                continue
            value = data[name]
            nested = SECTIONS.get(name) if cls is Config else None
            if nested is not None:
                optional = value is None and name in OPTIONAL_SECTIONS
                values[name] = None if optional else nested.from_dict(value, f"{key}.")
                continue
            check = spec.metadata.get("check")
            if check is not None and not check(value):
                raise ConfigError(f"{key}: got {value!r}; allowed: {spec.metadata['allowed']}")
            values[name] = value
        return cls(**values)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class EnvConfig(Section):
    id: str = rule(lambda v: isinstance(v, str) and v != "", "a Gymnasium environment id", "the environment")
    backend: str = rule(
        _one_of(ENV_BACKENDS),
        f"one of {', '.join(ENV_BACKENDS)}",
        "sync: in this process; async: a process per env; envpool: EnvPool's C++ threads",
    )
    threads: int = rule(
        lambda v: _integer(v) and v >= 0, "an integer >= 0 (0: one per CPU core)", "envpool: stepping threads in all"
    )
    kwargs: dict = rule(
        lambda v: isinstance(v, dict),
        "a mapping, e.g. {ctrl_cost_weight: 0.05}",
        "extra keyword arguments for gymnasium.make",
    )


@dataclass(frozen=True)
class NetworkConfig(Section):
    width: int = rule(*POSITIVE_INT, "units per hidden layer")
    depth: int = rule(*POSITIVE_INT, "number of hidden layers")
    activation: str = rule(_one_of(ACTIVATIONS), f"one of {', '.join(ACTIVATIONS)}", "hidden activation")
    layer_norm: bool = rule(*BOOLEAN, "LayerNorm after each hidden block")
    log_std_init: float = rule(
        lambda v: _number(v) and LOG_STD_MIN <= v <= LOG_STD_MAX,
        f"a number in [{LOG_STD_MIN:g}, {LOG_STD_MAX:g}]",
        "initial log-std of the policy",
    )
    ortho_init: bool = rule(*BOOLEAN, "orthogonal init with a small policy output gain")
    sde: bool = rule(*BOOLEAN, "state-dependent exploration (gSDE)")


@dataclass(frozen=True)
class OptimizerConfig(Section):
    """`optimizer=adam|rmsprop|sgd`: `name` and `weight_decay`, plus that optimizer's own keys."""

    name: str = rule(_one_of(OPTIMIZERS), f"one of {', '.join(OPTIMIZERS)}", "the torch optimizer")
    weight_decay: float = rule(*NON_NEGATIVE, "L2 penalty")
    options: dict = field(default_factory=dict)  # the optimizer's own keys (OWN_KEYS), as torch names them

    OWN_KEYS: ClassVar[dict[str, tuple[str, ...]]] = {
        "adam": ("eps", "betas"),
        "rmsprop": ("alpha", "eps"),
        "sgd": ("momentum",),
    }

    @classmethod
    def from_dict(cls, data: object, prefix: str):
        if not isinstance(data, dict) or data.get("name") not in OPTIMIZERS:
            name = data.get("name") if isinstance(data, dict) else data
            raise ConfigError(f"{prefix}name: got {name!r}; allowed: one of {', '.join(OPTIMIZERS)}")
        own = cls.OWN_KEYS[data["name"]]
        options = {k: data[k] for k in own if k in data}
        base = super().from_dict({k: v for k, v in data.items() if k not in own}, prefix)
        for key, value in options.items():
            ok = (
                isinstance(value, list) and all(_number(b) and 0 <= b < 1 for b in value)
                if key == "betas"
                else _number(value) and value >= 0
            )
            if not ok:
                allowed = "two numbers in [0, 1)" if key == "betas" else "a number >= 0"
                raise ConfigError(f"{prefix}{key}: got {value!r}; allowed: {allowed}")
        return dataclasses.replace(base, options=options)

    def to_dict(self) -> dict:
        return {"name": self.name, "weight_decay": self.weight_decay, **self.options}


@dataclass(frozen=True)
class AlgoConfig(Section):
    n_steps: int = rule(*POSITIVE_INT, "env steps per environment between updates")
    gae_lambda: float = rule(lambda v: _number(v) and 0 <= v <= 1, "a number in [0, 1]", "GAE's lambda")
    vf_coef: float = rule(*NON_NEGATIVE, "weight of the value loss")
    ent_coef: float = rule(*NON_NEGATIVE, "weight of the entropy bonus")
    max_grad_norm: float | None = rule(
        lambda v: v is None or (_number(v) and v > 0), "a number > 0 or null", "gradient norm clipping"
    )
    normalize_obs: bool = rule(*BOOLEAN, "running mean/std observation normalisation")
    return_scaling: bool = rule(*BOOLEAN, "divide returns by their running std")
    return_std_from: str = rule(
        _one_of(RETURN_STD_SOURCES),
        f"one of {', '.join(RETURN_STD_SOURCES)}",
        "return scaling's std: of the updates' bootstrapped returns, or of each env's discounted reward sum",
    )
    normalize_advantage: bool = rule(*BOOLEAN, "per-update advantage normalisation")
    lr_decay: bool = rule(*BOOLEAN, "anneal lr linearly to 0 over the budget")
    sde_sample_freq: int = rule(
        lambda v: _integer(v) and (v == -1 or v >= 1),
        "-1 (once per rollout) or an integer >= 1",
        "env steps between gSDE noise draws",
    )


@dataclass(frozen=True)
class TrainerConfig(Section):
    total_steps: int = rule(*POSITIVE_INT, "env steps in all")
    num_envs: int = rule(*POSITIVE_INT, "parallel environments")
    eval_every: int = rule(POSITIVE_INT[0], "an integer >= 1 (env steps)", "env steps between evaluations")
    eval_episodes: int = rule(*POSITIVE_INT, "episodes per evaluation")
    device: str = rule(_one_of(DEVICES), f"one of {', '.join(DEVICES)}", "where the networks run")
    torch_threads: int = rule(*POSITIVE_INT, "torch's CPU threads")
    progress_bar: bool = rule(*BOOLEAN, "a tqdm bar on stderr")


@dataclass(frozen=True)
class LoggerConfig(Section):
    """`logger=mlflow|none`; `none` needs only its name and ignores the other keys (a
    saved mlflow config re-run with `logger.name=none` keeps them)."""

    name: str = rule(_one_of(LOGGERS), "mlflow or none", "where runs are tracked")
    tracking_uri: str | None = rule(
        lambda v: v is None or isinstance(v, str),
        "a URI or null",
        "null: $MLFLOW_TRACKING_URI, else the embedded store",
    )
    store_dir: str = rule(lambda v: isinstance(v, str), "a folder", "the embedded store's folder")
    experiment: str = rule(lambda v: isinstance(v, str) and v != "", "a name", "MLflow experiment")
    run_name: str | None = rule(lambda v: v is None or isinstance(v, str), "a name or null", "MLflow run name")
    tags: dict = rule(lambda v: isinstance(v, dict), "a mapping", "extra run tags")
    log_model: bool = rule(*BOOLEAN, "log the policy as an MLflow model")

    @classmethod
    def from_dict(cls, data: object, prefix: str):
        if isinstance(data, dict) and data.get("name") == "none":
            known = [f.name for f in dataclasses.fields(cls)]
            unknown = [k for k in data if k not in known]
            if unknown:
                raise ConfigError(f"unknown config key '{prefix}{unknown[0]}'; logger has: {', '.join(known)}")
            return cls(
                name="none", tracking_uri=None, store_dir="", experiment="-", run_name=None, tags={}, log_model=False
            )
        return super().from_dict(data, prefix)

    @property
    def tracking(self) -> bool:
        return self.name == "mlflow"

    def to_dict(self) -> dict:
        return {"name": "none"} if not self.tracking else super().to_dict()


def _schedule(v) -> bool:
    """[[env_steps, lr, gamma], ...]: env steps rising, each lr > 0 and gamma in (0, 1]."""
    if not isinstance(v, list):
        return False
    steps = []
    for point in v:
        if not (isinstance(point, list) and len(point) == 3 and _integer(point[0]) and point[0] >= 1):
            return False
        if not (_number(point[1]) and point[1] > 0 and _number(point[2]) and 0 < point[2] <= 1):
            return False
        steps.append(point[0])
    return steps == sorted(set(steps))


def _space_entry(v) -> bool:
    """{low, high, log} (a float range) or {choices: [...]} (listed values)."""
    if isinstance(v, dict) and set(v) == {"choices"}:
        return isinstance(v["choices"], list) and len(v["choices"]) > 0 and all(map(_number, v["choices"]))
    if isinstance(v, dict) and set(v) == {"low", "high", "log"}:
        return _number(v["low"]) and _number(v["high"]) and v["low"] < v["high"] and _boolean(v["log"])
    return False


def _perturb(v) -> bool:
    return isinstance(v, list) and len(v) == 2 and all(_number(f) and f > 0 for f in v) and v[0] < 1 < v[1]


@dataclass(frozen=True)
class PbtConfig(Section):
    """Population-based training of a job's seeds (`hparams_search=pbt` sets it; its
    defaults live in abe.sweeps.pbt_sweeper)."""

    interval: int = rule(*POSITIVE_INT, "env steps per member between exploit-and-explore rounds")
    quantile: float = rule(
        lambda v: _number(v) and 0 < v <= 0.5, "a share in (0, 0.5]", "the bottom share copies the top share"
    )
    resample: float = rule(
        lambda v: _number(v) and 0 <= v <= 1, "a probability in [0, 1]", "explore by a fresh draw, not a factor"
    )
    perturb: list = rule(_perturb, "two factors [down, up] with down < 1 < up, e.g. [0.8, 1.25]", "explore factors")
    space: dict = rule(
        lambda v: isinstance(v, dict) and bool(v) and set(v) <= set(PBT_KEYS) and all(map(_space_entry, v.values())),
        "lr and/or gamma, each {low, high, log} or {choices: [...]}",
        "where starting values and fresh draws come from",
    )


SECTIONS: dict[str, type[Section]] = {
    "env": EnvConfig,
    "network": NetworkConfig,
    "optimizer": OptimizerConfig,
    "algo": AlgoConfig,
    "trainer": TrainerConfig,
    "logger": LoggerConfig,
    "pbt": PbtConfig,  # optional: null unless population-based training
}
OPTIONAL_SECTIONS = ("pbt",)


@dataclass(frozen=True)
class Config(Section):
    """One training job. `lr`, `gamma` and `seed` are top-level: what users change most."""

    lr: float = rule(lambda v: _number(v) and v > 0, "a number > 0, e.g. lr=3e-4", "optimizer learning rate")
    gamma: float = rule(lambda v: _number(v) and 0 < v <= 1, "a number in (0, 1], e.g. gamma=0.99", "discount factor")
    seed: int = rule(lambda v: _integer(v) and v >= 0, "an integer >= 0", "seeds torch and every env")
    n_seeds: int = rule(*POSITIVE_INT, "seeds per job, trained together")
    seed_statistic: str = rule(
        _one_of(SEED_STATISTICS), f"one of {', '.join(SEED_STATISTICS)}", "the job's objective over its seeds' returns"
    )
    schedule: list = rule(
        _schedule,
        "[] or [[env_steps, lr, gamma], ...], env steps >= 1 and rising (lr and gamma hold from the start)",
        "lr and gamma from these env steps on (a PBT schedule's replay)",
    )
    env: EnvConfig = rule(None, "", "the env group")
    network: NetworkConfig = rule(None, "", "the network group")
    optimizer: OptimizerConfig = rule(None, "", "the optimizer group")
    algo: AlgoConfig = rule(None, "", "the algo group")
    trainer: TrainerConfig = rule(None, "", "the trainer group")
    logger: LoggerConfig = rule(None, "", "the logger group")
    pbt: PbtConfig | None = rule(None, "", "population-based training (null: none)")

    @classmethod
    def from_dict(cls, data: object, prefix: str = "") -> Config:
        """Check every value of a plain (resolved) config; raise ConfigError for the first bad one."""
        cfg = super().from_dict(data, prefix)
        if cfg.pbt is not None and cfg.schedule:
            raise ConfigError("schedule: a population (pbt) makes its own schedules; allowed: schedule=[] with pbt")
        if cfg.pbt is not None and cfg.n_seeds < 2:
            raise ConfigError(f"n_seeds: got {cfg.n_seeds} with pbt; allowed: a population of 2 or more members")
        return cfg

    def to_dict(self) -> dict:
        return {
            "lr": self.lr,
            "gamma": self.gamma,
            "seed": self.seed,
            "n_seeds": self.n_seeds,
            "seed_statistic": self.seed_statistic,
            "schedule": self.schedule,
            **{name: None if getattr(self, name) is None else getattr(self, name).to_dict() for name in SECTIONS},
        }

    def to_yaml(self) -> str:
        """Plain YAML (no interpolation, nothing to resolve): what checkpoints and seed run dirs keep."""
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def with_seed(self, seed: int) -> Config:
        return dataclasses.replace(self, seed=seed, n_seeds=1)

    def member(self, seed: int, lr: float, gamma: float) -> Config:
        """One member of a population: a run of `seed` alone with its starting lr and gamma."""
        return dataclasses.replace(self.with_seed(seed), lr=lr, gamma=gamma, pbt=None)


def key_reference(config: dict) -> str:
    """A Markdown table of every key: its value in `config` (e.g. the composed default),
    what is allowed and what it sets, from the rules above (docs/configuration.md shows it)."""
    rows = ["| key | `python run.py` uses | allowed | what it sets |", "| --- | --- | --- | --- |"]

    def add(section: type[Section], values: dict | None, prefix: str) -> None:
        for spec in dataclasses.fields(section):
            if "check" not in spec.metadata:
                continue
            key = f"{prefix}{spec.name}"
            if values is None:  # an optional section the config leaves null
                rows.append(f"| `{key}` | (its sweeper's) | {spec.metadata['allowed']} | {spec.metadata['doc']} |")
                continue
            value = values.get(spec.name)
            nested = SECTIONS.get(spec.name) if section is Config else None
            if nested is not None and spec.name in OPTIONAL_SECTIONS and value is None:
                rows.append(f"| `{key}` | `null` | null or its keys below | {spec.metadata['doc']} |")
                add(nested, None, f"{key}.")
                continue
            if nested is not None:
                add(nested, value or {}, f"{key}.")
                continue
            shown = "null" if value is None else str(value).lower() if isinstance(value, bool) else value
            rows.append(f"| `{key}` | `{shown}` | {spec.metadata['allowed']} | {spec.metadata['doc']} |")
        if section is OptimizerConfig:
            own = ", ".join(f"{name}: {', '.join(keys)}" for name, keys in OptimizerConfig.OWN_KEYS.items())
            rows.append(
                f"| `optimizer.<own>` | see `conf/optimizer/` | numbers >= 0 (betas: two in [0, 1)) "
                f"| torch's own options ({own}) |"
            )

    add(Config, config, "")
    return "\n".join(rows) + "\n"
