"""What a trial costs on each launcher beyond its training: the same sweep of short
Pendulum trials (2 slots, no pruning, no tracking) with hydra/launcher=joblib and with
hydra/launcher=ray (a local Ray that the sweep starts), in alternating order.

    .venv/bin/python bench/launcher_overhead.py [--trials 10] [--steps 2048] [--rounds 2]

The trials train the same (same sampler seed); so the difference in wall time per trial
is the launcher's overhead per trial (Ray: its start, task scheduling, a worker process
per task; joblib: loky's reused workers).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import harness

RESULTS = harness.RESULTS / "launcher_overhead.md"
LAUNCHERS = {
    "joblib": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
    "ray": ["hydra/launcher=ray", "+hydra.launcher.ray.init.num_cpus=2", "+hydra.launcher.ray.remote.num_cpus=1"],
}


def sweep(launcher: str, trials: int, steps: int, folder: Path) -> float:
    overrides = ["env=pendulum", f"trainer.total_steps={steps}", f"trainer.eval_every={steps}", "logger=none"]
    overrides += [*LAUNCHERS[launcher], "hydra.sweeper.n_jobs=2", f"hydra.sweeper.n_trials={trials}"]
    overrides += ["hydra.sweeper.confirm_top=0", "hydra.sweeper.pruner=none"]
    return harness.sweep(folder, overrides)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--steps", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    walls: dict[str, list[float]] = {name: [] for name in LAUNCHERS}
    with tempfile.TemporaryDirectory(prefix="abe-launchers-") as tmp:
        for r in range(args.rounds):
            for name in LAUNCHERS if r % 2 == 0 else reversed(LAUNCHERS):
                walls[name].append(sweep(name, args.trials, args.steps, Path(tmp) / f"{name}{r}"))
                print(r, name, f"{walls[name][-1]:.1f} s", flush=True)
    per_trial = {name: statistics.median(w) / args.trials for name, w in walls.items()}
    lines = [
        f"# Launcher overhead: {args.trials} Pendulum trials of {args.steps:,} env steps, 2 slots",
        "",
        f"`{' '.join(['python', 'bench/launcher_overhead.py', *sys.argv[1:]])}`",
        "",
        "| launcher | sweep wall time per round (s) | median per trial (s) |",
        "| --- | --- | ---: |",
    ]
    lines += [f"| {n} | {', '.join(f'{x:.1f}' for x in w)} | {per_trial[n]:.2f} |" for n, w in walls.items()]
    extra = per_trial["ray"] - per_trial["joblib"]
    lines += [
        "",
        f"Ray adds {extra:+.2f} s of wall time per trial against joblib ({2 * extra:+.2f} s per trial of a slot).",
    ]
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
