"""What the scripts of bench/ share: run a command and time it, run an Optuna sweep of
run.py into a folder of its own and open its study, summarise repeated timings, and
write a Markdown table. Not a script: the others import it (`python bench/X.py` puts
bench/ on the import path; abe itself is installed)."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
RUN_PY = [sys.executable, str(ROOT / "run.py")]


@dataclass
class Timed:
    proc: subprocess.CompletedProcess
    seconds: float


def timed(command: list[str], cwd: Path = ROOT, check: bool = True, **kwargs) -> Timed:
    """Run `command` to its end; its output is captured (as text) unless `kwargs` says
    where it goes. `check`: a non-zero exit raises, with the command's last words."""
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=cwd, **kwargs)
    seconds = time.perf_counter() - start
    if check and proc.returncode != 0:
        tail = (proc.stderr or "")[-2000:] if isinstance(proc.stderr, str) else ""
        raise RuntimeError(f"{' '.join(map(str, command[:6]))} ... exited {proc.returncode}\n{tail}")
    return Timed(proc, seconds)


def sweep(folder: Path, overrides: list[str], study_name: str = "bench") -> tuple[float, object]:
    """`python run.py -m hparams_search=lr_gamma OVERRIDES` with its study in
    FOLDER/study.db and its dir in FOLDER/sweep: (wall seconds, the Optuna study)."""
    import optuna

    folder.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{folder / 'study.db'}"
    command = [*RUN_PY, "-m", "hparams_search=lr_gamma", "trainer.progress_bar=false", *overrides]
    command += [f"hydra.sweeper.study_name={study_name}", f"hydra.sweeper.storage={storage}"]
    command += [f"hydra.sweep.dir={folder / 'sweep'}"]
    run = timed(command, cwd=folder)
    return run.seconds, optuna.load_study(study_name=study_name, storage=storage)


def spread(values: list[float]) -> tuple[float, float, float]:
    """(min, median, max)."""
    return min(values), statistics.median(values), max(values)


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
