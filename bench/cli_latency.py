"""How fast run.py answers bad input and questions: whole commands, timed from start to
exit, several runs each (min / median / max), with the answer's first line.

    .venv/bin/python bench/cli_latency.py [--runs 5] [--write]

Nothing trains: each command is refused (exit 2), or prints and exits 0. Run it on a
quiet machine; the times include Python's start and every import on the way.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "cli_latency.md"
COMMANDS = [
    ["gama=0.9"],  # a typo in a key
    ["lr=-1"],  # a bad value
    ["env=halfchetah"],  # an unknown option
    ["-m", "env=pendulum", "lr=1e-3,-1"],  # a bad value in a sweep
    ["-m", "hparams_search=lr_gamma", "hydra.sweeper.n_trail=2"],  # a typo under hydra.sweeper
    ["--help"],
    ["--cfg", "job"],
]


def time_command(args: list[str], workdir: Path) -> tuple[float, int, str]:
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}"}
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), *args], cwd=workdir, capture_output=True, text=True, env=env
    )
    elapsed = time.perf_counter() - start
    answer = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
    return elapsed, proc.returncode, answer[0][:90] if answer else ""


def cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return "unknown CPU"
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "unknown CPU")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--write", action="store_true", help=f"write the table to {RESULTS.relative_to(ROOT)}")
    args = parser.parse_args()
    rows = [
        "| command | exit | min s | median s | max s | first line of the answer |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    with tempfile.TemporaryDirectory() as folder:
        for command in COMMANDS:
            times, code, answer = [], None, ""
            for _ in range(args.runs):
                elapsed, code, answer = time_command(command, Path(folder))
                times.append(elapsed)
            shown = " ".join(["python run.py", *command])
            rows.append(
                f"| `{shown}` | {code} | {min(times):.2f} | {statistics.median(times):.2f} | {max(times):.2f} "
                f"| {answer.replace('|', '/')} |"
            )
            print(rows[-1], flush=True)
    title = f"# run.py's answer time, {args.runs} runs per command ({cpu_model()}, {time.strftime('%Y-%m-%d')})"
    table = "\n".join([title, "", *rows, ""])
    if args.write:
        RESULTS.write_text(table)
    print(table)


if __name__ == "__main__":
    main()
