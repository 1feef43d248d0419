"""Every benchmark script still starts: it imports what it needs from abe and parses its
arguments (`--help`), so a rename in abe cannot leave a script broken unnoticed; and the
harness they share runs a real sweep and times it."""

import subprocess
import sys

import pytest

from abe import PROJECT_ROOT

BENCH = PROJECT_ROOT / "bench"
SCRIPTS = sorted(p for p in BENCH.glob("*.py") if p.stem != "harness")


def test_there_are_scripts_to_check():
    assert len(SCRIPTS) >= 10


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_a_bench_script_starts(script):
    proc = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("usage: "), proc.stdout[:500]


@pytest.mark.slow  # a real sweep of two tiny trials
def test_the_harness_runs_a_sweep_and_opens_its_study(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import harness

    tiny = ["env=pendulum", "trainer.total_steps=256", "trainer.num_envs=2", "trainer.eval_every=128"]
    tiny += ["trainer.eval_episodes=2", "logger=none", "hydra.sweeper.n_trials=2", "hydra.sweeper.confirm_top=0"]
    seconds, study = harness.sweep(tmp_path, tiny)
    assert seconds > 0 and len(study.trials) == 2 and all(t.state.name == "COMPLETE" for t in study.trials)
    assert (tmp_path / "sweep" / "optimization_results.yaml").exists()
    with pytest.raises(RuntimeError, match=r"exited 2\n.*error: lr: got -1"):
        harness.timed([*harness.RUN_PY, "lr=-1"])
    assert harness.markdown_table(["a", "b"], [[1, 2]]) == "| a | b |\n| --- | --- |\n| 1 | 2 |\n"
