"""Replays the trials of a finished, unpruned sweep through Optuna's pruners.

A pruner decides from the values trials report, so the learning curves an unpruned
sweep recorded (each job's result.json) tell what any pruner would have stopped, and
when, without training again: each trial is asked, reports its curve step by step to a
real Optuna study with that pruner, and stops where the pruner says. Trials run in
their sweep order, one at a time, as in bench/sweep_pruning.py's 1-worker sweeps. What
a replay cannot show: in a real pruned sweep, TPE's proposals after its 10 random
start-up trials depend on which trials were pruned, so later trials may differ.

    .venv/bin/python bench/pruning_replay.py SWEEP_DIR [--metric train/episode_return]

Prints, per pruner: the env steps spent (share saved), the best final value among the
trials that ran to the end, and which trials it stopped. With `--orders N` it also
replays the same trials in N shuffled orders (seeded): how much each pruner saves on
average, and how often the sweep's best trial, and its second best, run to the end. In
the sweep's own order a good trial may be safe only because it came early, among the
start-up trials that are never pruned.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
from pathlib import Path

import optuna

from abe.sweeps.pruning import PRUNERS, make_pruner

SPECS = ("none", "median:0.25", "median:0.1", "percentile:0.25:0.25")  # name:warm-up[:keep], as the sweeper's options


def load_curves(sweep_dir: Path) -> list[dict]:
    """Each job's evaluations, in job order, with its final value and env steps."""
    jobs = sorted((p for p in sweep_dir.iterdir() if (p / "result.json").exists()), key=lambda p: int(p.name))
    curves = []
    for job in jobs:
        result = json.loads((job / "result.json").read_text())
        curves.append(
            {
                "job": int(job.name),
                "evaluations": result["evaluations"],
                "final": result["eval/return_mean"],
                "total": result["env_steps"],
            }
        )
    return curves


def replay(curves: list[dict], spec: str, metric: str) -> tuple[int, float, list[tuple[int, int]]]:
    """(env steps spent, best final value of completed trials, [(job, pruned at step)])."""
    total = curves[0]["total"]
    study = optuna.create_study(direction="maximize", pruner=make_pruner(spec, total))
    spent, pruned = 0, []
    for curve in curves:
        trial = study.ask()
        stopped_at = None
        for record in curve["evaluations"]:
            trial.report(record.get(metric, record["eval/return_mean"]), record["env_steps"])
            if record["env_steps"] < total and trial.should_prune():
                stopped_at = record["env_steps"]
                break
        if stopped_at is None:
            study.tell(trial, curve["final"])
            spent += curve["total"]
        else:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            spent += stopped_at
            pruned.append((curve["job"], stopped_at))
    return spent, study.best_value, pruned


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--metric", default="train/episode_return")
    parser.add_argument("--orders", type=int, default=0, help="also replay in this many shuffled orders")
    parser.add_argument(
        "--specs", default=",".join(SPECS), help="pruner specs, as abe.optuna_sweeper.make_pruner reads them"
    )
    args = parser.parse_args()
    unknown = [spec for spec in args.specs.split(",") if spec.split(":")[0] not in PRUNERS]
    if unknown:
        parser.error(f"unknown pruner in {', '.join(unknown)}; allowed: {', '.join(PRUNERS)}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    curves = load_curves(args.sweep_dir)
    full = sum(c["total"] for c in curves)
    best_job = max(curves, key=lambda c: c["final"])
    print(
        f"{len(curves)} trials from {args.sweep_dir}; unpruned: {full:,} env steps, best {best_job['final']:.1f} "
        f"(job {best_job['job']}); pruning on {args.metric}"
    )
    for spec in args.specs.split(","):
        spent, best, pruned = replay(curves, spec, args.metric)
        stops = ", ".join(f"#{job}@{step // 1000}k" for job, step in pruned) or "none"
        print(
            f"  {spec:22s} {spent:>11,} env steps ({100 * (1 - spent / full):4.0f}% saved)  best {best:8.1f}  "
            f"stopped: {stops}"
        )
    if args.orders:
        print(f"in {args.orders} shuffled orders of the same trials:")
        for spec in args.specs.split(","):
            print(f"  {spec:22s} {shuffled_replays(curves, spec, args.metric, args.orders)}")


def shuffled_replays(curves: list[dict], spec: str, metric: str, orders: int) -> str:
    """Mean share of env steps saved, and how often the top two trials were not stopped."""
    full = sum(c["total"] for c in curves)
    first, second = (c["job"] for c in sorted(curves, key=lambda c: c["final"], reverse=True)[:2])
    rng = random.Random(0)
    saved, kept_first, kept_second = [], 0, 0
    for _ in range(orders):
        order = rng.sample(curves, len(curves))
        spent, _, pruned = replay(order, spec, metric)
        stopped = {job for job, _ in pruned}
        saved.append(1 - spent / full)
        kept_first += first not in stopped
        kept_second += second not in stopped
    return (
        f"{100 * statistics.mean(saved):4.0f}% saved on average (min {100 * min(saved):.0f}%); best trial "
        f"#{first} kept in {100 * kept_first / orders:.0f}% of orders, second best #{second} in "
        f"{100 * kept_second / orders:.0f}%"
    )


if __name__ == "__main__":
    main()
