"""What pruning saves, and what a second parallel worker adds, on a fixed-seed Optuna sweep.

Sweeps of the same seeded TPE study over lr and gamma, side by side in one run:
  plain       pruner=none, one trial at a time (the reference);
  median      pruner=median (from a quarter of the budget on: the default), one trial at a time;
  early       pruner=median from a tenth of the budget on, one trial at a time;
  percentile  pruner=percentile (top quarter goes on), one trial at a time;
  parallel    pruner=none, two trials at a time (joblib launcher, two processes).
Each trial evaluates (and reports to its pruner) `--reports` times. It prints the env
steps each sweep spent training (pruned trials stop early; evaluation episodes, the same
share of every trial, are not counted), the best value each found, and trials per hour
of 1 vs 2 workers. bench/pruning_replay.py replays a finished plain sweep through other
pruners without training again.

    .venv/bin/python bench/sweep_pruning.py [--trials 12] [--steps 500000] [--reports 10] [--sweeps plain,median]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

ROOT = Path(__file__).resolve().parent.parent


def run_sweep(tmp: Path, name: str, args, *extra: str) -> tuple[optuna.Study, float]:
    storage = f"sqlite:///{tmp / name}.db"
    start = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "run.py"),
            "-m",
            "hparams_search=lr_gamma",
            f"env={args.env}",
            f"trainer.total_steps={args.steps}",
            f"trainer.eval_every={args.steps // args.reports}",
            "trainer.eval_episodes=5",
            "trainer.progress_bar=false",
            f"hydra.sweeper.n_trials={args.trials}",
            f"hydra.sweeper.storage={storage}",
            f"hydra.sweep.dir={tmp / name}",
            f"logger.store_dir={tmp / 'mlflow'}",
            *extra,
        ],
        check=True,
        capture_output=True,
        env={"PATH": "/usr/bin:/bin", "MLFLOW_TRACKING_URI": ""},
    )
    wall = time.perf_counter() - start
    study = optuna.load_study(study_name=f"lr_gamma-{study_env_id(args.env)}", storage=storage)
    return study, wall


def study_env_id(preset: str) -> str:
    from omegaconf import OmegaConf

    return OmegaConf.load(ROOT / "conf" / "env" / f"{preset}.yaml").id


def env_steps_spent(study: optuna.Study, total: int) -> int:
    steps = 0
    for trial in study.trials:
        if trial.state == optuna.trial.TrialState.COMPLETE:
            steps += total
        elif trial.intermediate_values:
            steps += max(trial.intermediate_values)
    return steps


def describe(name: str, study: optuna.Study, wall: float, total: int) -> str:
    states = [t.state.name for t in study.trials]
    return (
        f"{name:32s} {env_steps_spent(study, total):>11,} env steps  best {study.best_value:8.1f}  "
        f"{wall:7.1f} s  {3600 * len(states) / wall:6.1f} trials/h  "
        f"({states.count('COMPLETE')} complete, {states.count('PRUNED')} pruned, {states.count('FAIL')} failed); "
        f"best trial #{study.best_trial.number}: " + ", ".join(f"{k}={v:.3g}" for k, v in study.best_params.items())
    )


SWEEPS = {
    "plain": ("1 worker, no pruning", ["hydra.sweeper.pruner=none"]),
    "median": ("1 worker, median pruning", ["hydra.sweeper.pruner=median"]),
    "early": ("1 worker, median pruning from 10%", ["hydra.sweeper.pruner=median", "hydra.sweeper.pruner_warmup=0.1"]),
    "percentile": ("1 worker, percentile pruning", ["hydra.sweeper.pruner=percentile"]),
    "parallel": (
        "2 workers (joblib), no pruning",
        ["hydra.sweeper.pruner=none", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweeper.n_jobs=2"],
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--steps", type=int, default=500_000)
    parser.add_argument("--reports", type=int, default=10, help="evaluations (pruner reports) per trial")
    parser.add_argument("--env", default="halfcheetah")
    parser.add_argument("--sweeps", default=",".join(SWEEPS), help="which of: " + ", ".join(SWEEPS))
    parser.add_argument(
        "--keep",
        type=Path,
        help="keep the sweeps (job dirs, studies) in this folder, e.g. for bench/pruning_replay.py KEEP/plain",
    )
    args = parser.parse_args()
    names = ["plain", *(n for n in args.sweeps.split(",") if n != "plain")]  # plain: the reference
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    done = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        for name in names:
            label, extra = SWEEPS[name]
            done[name] = run_sweep(folder, name, args, *extra)
            print(describe(label, *done[name], args.steps), flush=True)
    plain, plain_wall = done["plain"]
    print()
    for name in ("median", "early", "percentile"):
        if name in done:
            study = done[name][0]
            saved = 1 - env_steps_spent(study, args.steps) / env_steps_spent(plain, args.steps)
            print(
                f"{name} pruning saved {100 * saved:.0f}% of env steps; best {study.best_value:.1f} "
                f"vs {plain.best_value:.1f} unpruned"
            )
    if "parallel" in done:
        print(f"2 workers: {plain_wall / done['parallel'][1]:.2f}x the trials per hour of 1")


if __name__ == "__main__":
    main()
