"""How much MLflow tracking adds to the wall time of a training run.

Part 1, in one process: the same 20k-step HalfCheetah job with `logger=none` and
`logger=mlflow` (embedded sqlite store), alternating. Everything a tracked run does is
timed: creating the run, params, metrics at each evaluation, the model, the artifacts,
ending the run. Besides both wall times it sums the time the training process spends
inside the tracker's calls (MLflow itself works in a helper process, abe.tracking.helper,
so this is sending, and waiting at the end until the run is stored), which measures the
overhead without the run-to-run noise of training (~±3%).

Part 2, whole commands: `python run.py` with each logger, which adds starting the
helper, importing MLflow and opening the store to the tracked run.

    .venv/bin/python bench/tracking_overhead.py [--repeats 8] [--cli-repeats 10] [--steps 20000]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

import harness

from abe.commands.hydra_edge import compose, to_config
from abe.commands.train import Job
from abe.tracking.helper import BackgroundTracker, prewarm

in_tracker = [0.0]  # seconds the training process spends inside tracker calls
_depth = [0]  # calls inside calls count once


def _timed(method):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        _depth[0] += 1
        try:
            return method(*args, **kwargs)
        finally:
            _depth[0] -= 1
            if _depth[0] == 0:
                in_tracker[0] += time.perf_counter() - start

    return wrapper


for _name in ("__init__", "log_metrics", "log_model", "set_tags", "finish", "_reply"):
    setattr(BackgroundTracker, _name, _timed(getattr(BackgroundTracker, _name)))


def one_job(logger: str, steps: int, root: Path, index: int) -> float:
    run_dir = root / f"{logger}-{index}"
    run_dir.mkdir(parents=True)
    cfg = to_config(
        compose(
            [
                "env=halfcheetah",
                f"trainer.total_steps={steps}",
                "trainer.eval_every=10000",
                "trainer.progress_bar=false",
                f"logger={logger}",
                *([f"logger.store_dir={root / 'store'}"] if logger == "mlflow" else []),
            ]
        )
    )
    start = time.perf_counter()
    if logger == "mlflow":
        prewarm()  # as run.py does when it starts
    Job(cfg, run_dir, [], parent=None).run()  # what run.py's job does: train, track, write
    return time.perf_counter() - start


def cli_job(logger: str, steps: int, root: Path, index: int) -> float:
    overrides = ["env=halfcheetah", f"trainer.total_steps={steps}", "trainer.eval_every=10000"]
    overrides += ["trainer.progress_bar=false", f"logger={logger}", f"hydra.run.dir={root / f'cli-{logger}-{index}'}"]
    overrides += [f"logger.store_dir={root / 'cli-store'}"] if logger == "mlflow" else []
    env = {"PATH": "/usr/bin:/bin", "MLFLOW_TRACKING_URI": ""}
    return harness.timed([*harness.RUN_PY, *overrides], env=env).seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--cli-repeats", type=int, default=10)
    parser.add_argument("--steps", type=int, default=20_000)
    args = parser.parse_args()
    times: dict[str, list[float]] = {"none": [], "mlflow": []}
    tracker_times: list[float] = []
    cli: dict[str, list[float]] = {"none": [], "mlflow": []}
    with tempfile.TemporaryDirectory() as tmp:
        if args.repeats:
            one_job("mlflow", 2_000, Path(tmp) / "warmup", 0)  # store creation and imports, once
        for i in range(args.repeats):
            for logger in ("none", "mlflow"):
                in_tracker[0] = 0.0
                times[logger].append(one_job(logger, args.steps, Path(tmp), i))
                if logger == "mlflow":
                    tracker_times.append(in_tracker[0])
                print(f"repeat {i}: logger={logger:6s} {times[logger][-1]:.3f} s", flush=True)
        for i in range(args.cli_repeats):
            for logger in ("none", "mlflow"):
                cli[logger].append(cli_job(logger, args.steps, Path(tmp), i))
                print(f"command {i}: logger={logger:6s} {cli[logger][-1]:.3f} s", flush=True)
    print(f"\nHalfCheetah-v5, {args.steps:,} env steps, medians")
    if args.repeats:
        base, tracked = statistics.median(times["none"]), statistics.median(times["mlflow"])
        inside = statistics.median(tracker_times)
        print(
            f"  in process ({args.repeats} each): logger=none {base:.3f} s, logger=mlflow {tracked:.3f} s "
            f"({100 * (tracked / base - 1):+.1f}%)"
        )
        print(f"  time inside the tracker: {inside:.3f} s = {100 * inside / base:.1f}% of the untracked run")
    if args.cli_repeats:
        cbase, ctracked = statistics.median(cli["none"]), statistics.median(cli["mlflow"])
        print(
            f"  python run.py ({args.cli_repeats} each): logger=none {cbase:.2f} s, logger=mlflow {ctracked:.2f} s "
            f"({100 * (ctracked / cbase - 1):+.1f}%, helper start, MLflow import and store opening included)"
        )
        # Commands alternate, so each pair ran under the same machine conditions.
        differences = [t - b for b, t in zip(cli["none"], cli["mlflow"], strict=True)]
        paired = statistics.median(differences)
        low, high = bootstrap_interval(differences)
        print(
            f"  median of the paired differences: {paired:+.2f} s ({100 * paired / cbase:+.1f}%), "
            f"95% bootstrap interval {100 * low / cbase:+.1f}% to {100 * high / cbase:+.1f}%"
        )


def bootstrap_interval(values: list[float], resamples: int = 10_000) -> tuple[float, float]:
    """A 95% percentile-bootstrap interval for the median of `values` (seeded)."""
    rng = random.Random(0)
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(resamples))
    return medians[int(0.025 * resamples)], medians[int(0.975 * resamples) - 1]


if __name__ == "__main__":
    main()
