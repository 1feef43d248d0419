"""A single-seed sweep against a seed-robust sweep, at the same total env-step budget.

Both search lr and gamma on HalfCheetah-v5 (`hparams_search=lr_gamma`, seeded TPE): the
single-seed sweep runs T x K trials of one seed, the robust sweep T trials of K seeds
trained together (`n_seeds=K`), ranked by `seed_statistic`; without pruning (the
default) the budgets match exactly. With `--pruner median`, both sweeps prune and get
the same env-step budget (`hydra.sweeper.max_env_steps`, T x K x steps) instead of a
trial count, so each runs as many trials as its pruned ones leave room for.
Each sweep then re-trains its best configuration on the same 5 held-out seeds (its own
confirmation, seeds 1000-1004). Reported per sweep: its pick, its own estimate of the
pick (the best trial's value: the objective, e.g. a lower bound) and the mean of the
pick's tuning-seed returns, the pick's held-out mean with a 95% bootstrap interval, and
the optimism of both estimates against the held-out mean.

    .venv/bin/python bench/robust_tuning.py --trials 4 --seeds 4 --steps 300000
    .venv/bin/python bench/robust_tuning.py --trials 8 --seeds 4 --steps 300000 --pruner median
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import harness
import optuna

from abe.core.result import OBJECTIVE, read_results


def sweep(name: str, trials: int, seeds: int, args, out: Path) -> dict:
    sweep_dir, budget = out / name, args.trials * args.seeds * args.steps
    limits = [f"hydra.sweeper.n_trials={trials}"]
    if args.pruner != "none":  # pruned trials leave budget for more: a cap far above what fits
        limits = [f"hydra.sweeper.n_trials={4 * trials}", f"hydra.sweeper.max_env_steps={budget}"]
    overrides = [
        "experiment=halfcheetah",
        f"n_seeds={seeds}",
        f"seed_statistic={args.statistic}",
        f"hydra.sweeper.sampler.seed={args.sampler_seed}",
        f"trainer.total_steps={args.steps}",
        f"trainer.eval_every={args.steps // 4}",
        "logger=none",
        *limits,
        f"hydra.sweeper.pruner={args.pruner}",
        "hydra.sweeper.confirm_top=1",
        "hydra.sweeper.confirm_seeds=5",
    ]
    wall, study = harness.sweep(sweep_dir, overrides, study_name=name)
    sweep_dir = sweep_dir / "sweep"
    results = read_results(sweep_dir)
    pick = results["confirmation"][0]
    tuned = json.loads((sweep_dir / str(pick["trial"]) / "result.json").read_text())  # job dir = trial number
    states = [t.state for t in study.trials]
    return {
        **pick,  # its `seeds` are the held-out ones
        "name": name,
        "trials": len(states),
        "pruned": states.count(optuna.trial.TrialState.PRUNED),
        "env_steps": results["env_steps"],
        "tuning_seeds": seeds,
        "minutes": wall / 60,
        "estimate": pick["tuning_value"],
        "tuning_mean": statistics.mean(tuned.get("per_seed", [tuned[OBJECTIVE]])),  # its tuning seeds' final returns
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--trials", type=int, default=4, help="robust trials; the single-seed sweep runs trials x seeds"
    )
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=300_000, help="env steps per seed")
    parser.add_argument("--statistic", default="lcb")
    parser.add_argument("--sampler-seed", type=int, default=0, help="TPE's seed, the same for both sweeps")
    parser.add_argument(
        "--pruner", default="none", help="none: fixed trial counts; median etc.: equal env-step budgets"
    )
    parser.add_argument("--out", type=Path, default=harness.ROOT / "outputs" / "bench" / "robust_tuning")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    jobs = [("single_seed", args.trials * args.seeds, 1), ("robust", args.trials, args.seeds)]
    with ThreadPoolExecutor(2) as pool:  # one sweep per core
        rows = list(pool.map(lambda job: sweep(*job, args, args.out), jobs))
    budget = args.trials * args.seeds * args.steps
    print(
        f"HalfCheetah-v5, lr x gamma, {budget:,} env steps of search per sweep ({args.steps:,} per seed), "
        f"objective {args.statistic} for the robust sweep, pruner {args.pruner}, sampler seed {args.sampler_seed}; "
        "picks re-trained on held-out seeds 1000-1004"
    )
    print(
        "| sweep | trials (pruned) x seeds | env steps | pick (lr, gamma) | own estimate (objective) "
        "| tuning seeds' mean | held-out returns "
        "| held-out mean [95% interval] | optimism (objective, mean) | minutes |"
    )
    print("| --- | --- | ---: | --- | ---: | ---: | --- | ---: | ---: | ---: |")
    for row in rows:
        held = " / ".join(f"{r:.0f}" for r in row["returns"])
        optimism = [
            100 * (row[key] / row["mean"] - 1) if row["mean"] else float("nan") for key in ("estimate", "tuning_mean")
        ]
        print(
            f"| {row['name']} | {row['trials']} ({row['pruned']}) x {row['tuning_seeds']} | {row['env_steps']:,} "
            f"| {row['params']['lr']:.3g}, "
            f"{row['params']['gamma']} | {row['estimate']:.0f} | {row['tuning_mean']:.0f} | {held} "
            f"| {row['mean']:.0f} [{row['ci95'][0]:.0f}, {row['ci95'][1]:.0f}] "
            f"| {optimism[0]:+.0f}%, {optimism[1]:+.0f}% | {row['minutes']:.1f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
