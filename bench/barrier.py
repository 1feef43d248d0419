"""What the batch barrier costs: the same pruned HalfCheetah sweep on 2 slots, with abe's
slots (the next trial starts when any ends) and with hydra-optuna-sweeper's batches
(`hydra.sweeper.wait_for_batch=true`: 2 trials at a time, each batch waits for its slower).

Both use the same sampler seed, trial budget and pruner, each in a fresh sqlite study, and
run one after another in alternating order (`--rounds`); the ratio is per round.

    .venv/bin/python bench/barrier.py [--trials 12] [--steps 300000] [--rounds 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import harness

RESULTS = harness.RESULTS / "barrier.md"
MODES = {"slots": "false", "batches": "true"}


def sweep(mode: str, trials: int, steps: int, folder: Path) -> dict:
    overrides = ["env=halfcheetah", f"trainer.total_steps={steps}", f"trainer.eval_every={steps // 12}"]
    overrides += ["logger=none", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweeper.n_jobs=2"]
    overrides += [f"hydra.sweeper.n_trials={trials}", "hydra.sweeper.confirm_top=0", "hydra.sweeper.pruner=median"]
    overrides += [f"hydra.sweeper.wait_for_batch={MODES[mode]}"]
    wall, study = harness.sweep(folder / mode, overrides)
    states = [t.state.name for t in study.trials]
    steps_run = sum(max(t.intermediate_values, default=0) for t in study.trials)
    seconds = [(t.datetime_complete - t.datetime_start).total_seconds() for t in study.trials]
    # a batch's slot idles from its trial's end to its batch's end (trials numbered in asking order)
    batches = [seconds[i : i + 2] for i in range(0, len(seconds), 2)]
    idle = sum(max(b) - x for b in batches for x in b) if mode == "batches" else 0.0
    return {
        "wall_s": wall,
        "complete": states.count("COMPLETE"),
        "pruned": states.count("PRUNED"),
        "env_steps": steps_run,
        "best": study.best_value,
        "trial_s": sum(seconds),
        "idle_slot_s": idle,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--steps", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    rows, ratios = [], []
    with tempfile.TemporaryDirectory(prefix="abe-barrier-") as tmp:
        for r in range(args.rounds):
            order = ["slots", "batches"] if r % 2 == 0 else ["batches", "slots"]
            result = {}
            for mode in order:
                result[mode] = sweep(mode, args.trials, args.steps, Path(tmp) / f"round{r}")
                rows.append((r, mode, result[mode]))
                print(r, mode, json.dumps(result[mode]), flush=True)
            ratios.append(result["batches"]["wall_s"] / result["slots"]["wall_s"])
    lines = [
        f"# The batch barrier: {args.trials}-trial HalfCheetah-v5 sweep, median pruning, 2 joblib slots",
        "",
        f"`{' '.join(['python', 'bench/barrier.py', *sys.argv[1:]])}`; {args.steps:,} env steps per trial, "
        f"evaluated every {args.steps // 12:,}; same sampler seed (0) for both.",
        "",
        "| round | loop | wall time (s) | complete | pruned | env steps run | best | trial time, summed (s) "
        "| slot time idle at the barrier (s) |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r, mode, res in rows:
        lines.append(
            f"| {r} | {mode} | {res['wall_s']:.0f} | {res['complete']} | {res['pruned']} | {res['env_steps']:,} "
            f"| {res['best']:.1f} | {res['trial_s']:.0f} | {res['idle_slot_s']:.0f} |"
        )
    lines += [
        "",
        f"Speed-up of slots over batches (batches' wall time / slots'): median {statistics.median(ratios):.2f}x "
        f"({', '.join(f'{x:.2f}' for x in ratios)})",
    ]
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
