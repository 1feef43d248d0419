"""The README's examples are true, and the guide's where they show output: the bad-input
blocks print what they show, the snippet for loading a trained policy works from the
repo root, and every `python run.py` command of the README runs (with a small budget)."""

import os
import re
import shlex
import subprocess
import sys

import pytest

from abe import PROJECT_ROOT
from abe.commands.hydra_edge import check_command_line
from tests.cli.test_commands import result_of
from tests.conftest import TINY, run_cli

README = (PROJECT_ROOT / "README.md").read_text()
CONFIGURATION = (PROJECT_ROOT / "docs" / "configuration.md").read_text()
TRACKING = (PROJECT_ROOT / "docs" / "tracking.md").read_text()


def _block_after(text: str, heading: str, language: str) -> str:
    start = text.index(heading)
    return re.search(rf"```{language}\n(.*?)```", text[start:], re.S).group(1)


def _bad_input_examples() -> list[tuple[list[str], str]]:
    lines = [
        line for page in (README, CONFIGURATION) for line in _block_after(page, "## Bad input", "text").splitlines()
    ]
    return [
        (shlex.split(command.removeprefix("$ python run.py ")), shown)
        for command, shown in zip(lines[::2], lines[1::2], strict=True)
    ]


@pytest.mark.parametrize("argv,shown", _bad_input_examples(), ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_each_bad_input_example_prints_what_the_readme_shows(argv, shown, capsys):
    with pytest.raises(SystemExit) as exit_info:
        check_command_line(argv)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == shown + "\n"


def test_the_load_a_policy_snippet_works_from_the_repo_root(tracked_run, tmp_path):
    # The snippet names the default store relative to the repo root: here a repo root
    # whose outputs/mlflow is the tracked run's store, the run's id and its env filled in.
    _, run_dir, store = tracked_run
    (tmp_path / "outputs").mkdir()
    (tmp_path / "outputs" / "mlflow").symlink_to(store)
    snippet = _block_after(TRACKING, "## Where things go", "python")
    snippet = snippet.replace('run_id = "..."', f'run_id = "{result_of(run_dir)["mlflow_run_id"]}"')
    snippet = snippet.replace("HalfCheetah-v5", "Pendulum-v1") + "print(action.shape, float(abs(action).max()))\n"
    proc = subprocess.run(
        [sys.executable, "-c", snippet],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "MLFLOW_TRACKING_URI": ""},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    shape, largest = proc.stdout.split(")")[-2] + ")", float(proc.stdout.split()[-1])
    assert shape.endswith("(1,)") and largest <= 2.0  # Pendulum's one torque, within its bounds
    assert not (tmp_path / "mlflow.db").exists()  # no stray store next to the snippet


# Appended to each README command: a budget of a few hundred steps, no tracking, one
# trial per search (the commands themselves stay as the README prints them).
SMALL = [*TINY]
SMALL_SEARCH = ["hydra.sweeper.n_trials=1", "hydra.sweeper.confirm_top=0"]
SMALL_POPULATION = ["hydra.sweeper.population=2", "hydra.sweeper.interval=128", "hydra.sweeper.confirm_seeds=0"]


def readme_commands(start: str = "python run.py") -> list[str]:
    """Every command of the README's bash blocks that starts with `start`, continuation
    lines joined, comments dropped."""
    blocks = re.findall(r"```bash\n(.*?)```", README, re.S)
    lines = [line.split("  #")[0].strip() for block in blocks for line in block.replace("\\\n", " ").splitlines()]
    return [" ".join(line.split()) for line in lines if line.startswith(start)]


# Not run here: a saved run dir's path is an example (tests/cli/test_run_cli.py re-runs a
# real one); the Ray command needs a cluster (tests/system/test_cluster.py runs it on one);
# there is no SLURM here (tests/unit/test_config.py composes the SLURM preset); the grid
# sweep runs tracked in tests/cli/test_sweeps.py.
ELSEWHERE = ("outputs/runs/20", "hydra/launcher=ray", "hydra/launcher=slurm", "-m env=")


def _readme_run_commands() -> list[str]:
    """The README's commands as this test runs them: once each, counting two that differ only
    in keys the test sets itself (a sweep's n_trials, a budget) as one, and leaving out a
    command whose arguments all come again in a longer one (that one runs them)."""
    own = {extra.split("=")[0] for extra in SMALL + SMALL_SEARCH + SMALL_POPULATION}
    runs = {}
    for command in readme_commands():
        if any(mark in command for mark in ELSEWHERE):
            continue
        runs.setdefault(frozenset(a for a in shlex.split(command) if a.split("=")[0] not in own), command)
    return [command for args, command in runs.items() if not any(args < other for other in runs)]


@pytest.mark.parametrize("command", _readme_run_commands())
def test_each_readme_run_command_runs(command, tmp_path):
    argv = shlex.split(command.removeprefix("python run.py "))
    search = next((a for a in argv if a.startswith("hparams_search=")), None)
    extra = SMALL + {None: [], "hparams_search=pbt": SMALL_POPULATION}.get(search, SMALL_SEARCH)
    proc = run_cli(*argv, *extra, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
