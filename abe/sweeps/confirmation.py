"""After the search: re-train the best configurations on held-out seeds.

A sweep's best value is the maximum of many noisy estimates, so it overstates what the
configuration gets on seeds the sweep never saw (the winner's curse). Confirmation
re-trains the `confirm_top` best trials of the study on `confirm_seeds` seeds that no
trial used, trained together in one job each (`n_seeds`), and ranks them by their mean
there. The held-out seeds start HELD_OUT_OFFSET above the tuning seeds, so neither the
seeds nor their envs' seeds (seed + i for env i) meet any tuning seed's.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import shlex
from pathlib import Path

import optuna
import yaml

from abe.core import stats
from abe.core.errors import ConfigError
from abe.core.result import BEST_COMMAND_FILE, CONFIRMATION_TAG, OBJECTIVE, RESULTS_FILE, read_results

log = logging.getLogger(__name__)

HELD_OUT_OFFSET = 1000


def check_confirmation(confirm_top: int, confirm_seeds: int, n_seeds: int, num_envs: int) -> None:
    if not isinstance(confirm_top, int) or confirm_top < 0:
        raise ConfigError(
            f"hydra.sweeper.confirm_top: got {confirm_top!r}; allowed: an integer >= 0 (0: no confirmation)"
        )
    if not isinstance(confirm_seeds, int) or confirm_seeds < 1:
        raise ConfigError(f"hydra.sweeper.confirm_seeds: got {confirm_seeds!r}; allowed: an integer >= 1")
    if n_seeds + num_envs > HELD_OUT_OFFSET:
        raise ConfigError(
            f"n_seeds: {n_seeds} seeds of {num_envs} envs would reach the held-out seeds (tuning seed + "
            f"{HELD_OUT_OFFSET}); allowed: n_seeds + trainer.num_envs <= {HELD_OUT_OFFSET}"
        )


def held_out_seeds(tuning_seed: int, count: int) -> list[int]:
    first = tuning_seed + HELD_OUT_OFFSET
    return list(range(first, first + count))


def best_configurations(study: optuna.Study, top: int) -> list[optuna.trial.FrozenTrial]:
    """The `top` best complete trials with distinct params, best first."""
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    ranked = sorted(complete, key=lambda t: t.value, reverse=study.direction == optuna.study.StudyDirection.MAXIMIZE)
    chosen, seen = [], set()
    for trial in ranked:
        key = json.dumps(trial.params, sort_keys=True)
        if key not in seen:
            seen.add(key)
            chosen.append(trial)
    return chosen[:top]


def confirmation_overrides(fixed: list[str], trial: optuna.trial.FrozenTrial, seeds: list[int], rank: int) -> list[str]:
    return [
        *fixed,
        *(f"{name}={value}" for name, value in trial.params.items()),
        f"seed={seeds[0]}",
        f"n_seeds={len(seeds)}",
        f"++logger.tags.{CONFIRMATION_TAG}={rank}",
    ]


def read_returns(job_dir: Path) -> list[float]:
    """The held-out seeds' final eval returns, from the job's result.json."""
    result = json.loads((job_dir / "result.json").read_text())
    return [float(v) for v in result.get("per_seed", [result[OBJECTIVE]])]


def job_value(job) -> object:
    """A launched job's return value; raises what the job raised (Hydra's own "Error
    executing job" lines are silenced: the sweeper says it in one)."""
    with contextlib.redirect_stderr(io.StringIO()):
        return job.return_value


def entry(number: int, params: dict, tuning_value: float, seeds: list[int], returns: list[float], **extra) -> dict:
    """One confirmed configuration: its held-out returns and their statistics."""
    low, high = stats.interval(returns)
    return {
        "trial": number,
        **extra,
        "params": dict(params),
        "tuning_value": float(tuning_value),
        "seeds": list(seeds),
        "returns": [round(r, 3) for r in returns],
        "mean": round(stats.mean(returns), 3),
        "iqm": round(stats.iqm(returns), 3),
        "ci95": [round(low, 3), round(high, 3)],
    }


def write_results(sweep_dir: Path, results: dict) -> None:
    """A new optimization_results.yaml (a sweep dir used again loses the last sweep's)."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    (sweep_dir / RESULTS_FILE).write_text(yaml.safe_dump(results, sort_keys=False))


def update_results(sweep_dir: Path, **keys) -> None:
    write_results(sweep_dir, {**read_results(sweep_dir), **keys})


def write_best_command(sweep_dir: Path, overrides: list[str], what: str) -> None:
    """best_command.txt: the single run that trains `what`; also in the results file."""
    command = shlex.join(["python", "run.py", *overrides])
    (sweep_dir / BEST_COMMAND_FILE).write_text(command + "\n")
    update_results(sweep_dir, best_command={"trains": what, "command": command})
    log.info("re-train %s:\n  %s", what, command)


def write_confirmation(rows: list[dict], sweep_dir: Path) -> None:
    """`confirmation:` in optimization_results.yaml (best first), a Markdown table and a plot."""
    update_results(sweep_dir, confirmation=rows)
    lines = [
        "| rank | trial | params | tuning value | held-out returns | mean | IQM | 95% interval |",
        "| ---: | ---: | --- | ---: | --- | ---: | ---: | --- |",
    ]
    for rank, row in enumerate(rows, 1):
        params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row["params"].items())
        shown = " / ".join(f"{r:.0f}" for r in row["returns"])
        label = row.get("label", f"#{row['trial']}")  # a PBT replay names its member
        lines.append(
            f"| {rank} | {label} | {params} | {row['tuning_value']:.1f} | {shown} | {row['mean']:.1f} "
            f"| {row['iqm']:.1f} | [{row['ci95'][0]:.1f}, {row['ci95'][1]:.1f}] |"
        )
    (sweep_dir / "confirmation.md").write_text("\n".join(lines) + "\n")
    if rows:
        from abe.core.plots import confirmation_plot  # matplotlib: only once there is something to draw

        confirmation_plot(rows, sweep_dir / "confirmation.png")
