"""`python -m abe resume`: a run killed with SIGKILL ends with the same eval returns as
an uninterrupted one, in the same MLflow run; checkpoints are written atomically."""

import json
import os
import signal
import subprocess
import sys
import time

import mlflow
import pytest
import torch

from abe import PROJECT_ROOT
from abe.agent.agent import build_agent
from abe.agent.checkpoint import checkpoint_config, read_checkpoint, save_checkpoint
from abe.envs.vector import make_vector_env
from tests.conftest import run_module

RUN = [
    "env=pendulum",
    "trainer.total_steps=6144",
    "trainer.num_envs=4",
    "trainer.eval_every=1024",
    "trainer.eval_episodes=3",
    "trainer.progress_bar=false",
]


def returns(run_dir):
    result = json.loads((run_dir / "result.json").read_text())
    return result, [(e["env_steps"], e["eval/return_mean"]) for e in result["evaluations"]]


def checkpoint_steps(path) -> int:
    try:
        return torch.load(path, weights_only=True)["env_steps"]
    except (OSError, RuntimeError, EOFError):
        return 0


def test_sigkilled_run_resumes_to_the_same_returns_in_the_same_mlflow_run(tmp_path, make_cfg):
    from abe.training.loop import train

    store = tmp_path / "store"
    env = {"MLFLOW_TRACKING_URI": ""}
    # The uninterrupted reference trains in this process (the same numbers as run.py's: the
    # k-seed test below compares the two paths float for float)
    whole = train(make_cfg(*RUN, "logger=none"), tmp_path / "whole")
    expected = [(e["env_steps"], e["eval/return_mean"]) for e in whole.evaluations]

    killed_dir = tmp_path / "killed"
    proc = subprocess.Popen(
        [
            sys.executable,
            str(PROJECT_ROOT / "run.py"),
            *RUN,
            f"logger.store_dir={store}",
            f"hydra.run.dir={killed_dir}",
        ],
        cwd=PROJECT_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **env},
    )
    deadline = time.monotonic() + 120
    while checkpoint_steps(killed_dir / "checkpoints" / "last.pt") < 2048:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    killed = read_checkpoint(killed_dir / "checkpoints" / "last.pt")
    killed_at = killed["env_steps"]
    assert 2048 <= killed_at < 6144 and not (killed_dir / "result.json").exists()
    # MLflow's helper process saw the training process die and ended the run: not RUNNING.
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    deadline = time.monotonic() + 60
    while client.get_run(killed["mlflow_run_id"]).info.status == "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.2)
    killed_run = client.get_run(killed["mlflow_run_id"])
    assert killed_run.info.status == "KILLED" and "ended without reporting" in killed_run.data.tags["error"]

    resumed = run_module("resume", str(killed_dir), "--tracking-uri", f"sqlite:///{store / 'mlflow.db'}")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming at {killed_at:,} env steps" in resumed.stdout + resumed.stderr
    result, got = returns(killed_dir)
    assert got == expected  # every evaluation, float for float

    run = client.get_run(result["mlflow_run_id"])
    assert run.info.status == "FINISHED"  # the KILLED run, finished by the resume
    history = client.get_metric_history(run.info.run_id, "eval/return_mean")
    assert sorted({(m.step, m.value) for m in history}) == expected


def test_resuming_a_finished_run_says_so(tracked_run):
    _, run_dir, store = tracked_run
    proc = run_module("resume", str(run_dir), "--tracking-uri", f"sqlite:///{store / 'mlflow.db'}")
    assert proc.returncode == 2
    assert proc.stderr == f"error: resume: the run in {run_dir} already finished (256 of 256 env steps)\n"


def test_resume_of_something_else_is_one_line(tmp_path):
    proc = run_module("resume", str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr == f"error: checkpoint: no file at '{tmp_path / 'checkpoints' / 'last.pt'}'\n"


def test_a_kill_while_writing_leaves_the_previous_checkpoint_intact(tracked_run, tmp_path, monkeypatch):
    _, run_dir, _ = tracked_run
    state = read_checkpoint(run_dir / "checkpoints" / "last.pt")
    cfg = checkpoint_config(state)
    envs = make_vector_env(cfg.env.id, 1)
    agent = build_agent(cfg, envs.single_observation_space, envs.single_action_space)
    envs.close()
    path = tmp_path / "last.pt"
    path.write_bytes((run_dir / "checkpoints" / "last.pt").read_bytes())
    before = path.read_bytes()

    def dies_mid_write(fd):
        assert path.with_name("last.pt.tmp").stat().st_size > 0  # the new checkpoint is being written
        raise KeyboardInterrupt  # the process is interrupted before it is on disk

    monkeypatch.setattr(os, "fsync", dies_mid_write)
    training = {k: state[k] for k in ("progress", "rollout", "rng", "mlflow_run_id")}
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(agent, path, cfg, training)
    assert path.read_bytes() == before
    assert read_checkpoint(path)["env_steps"] == 256
    assert not path.with_name("last.pt.tmp").exists()  # no half-written file is left beside it


def test_an_envpool_run_resumes_with_new_episodes_and_says_so(make_cfg, tmp_path, caplog):
    from abe.training.callbacks import Checkpointer
    from abe.training.loop import train

    common = [
        "env=pendulum",
        "env.backend=envpool",
        "trainer.num_envs=4",
        "trainer.eval_every=512",
        "trainer.eval_episodes=2",
        "trainer.progress_bar=false",
        "logger=none",
    ]
    train(make_cfg(*common, "trainer.total_steps=1024"), tmp_path, [Checkpointer()])
    checkpoint = read_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert checkpoint["rollout"]["envs"] is None  # EnvPool exposes no env state
    result = train(make_cfg(*common, "trainer.total_steps=2048"), tmp_path, resume=checkpoint)
    assert "holds no env states (EnvPool" in caplog.text
    assert [e["env_steps"] for e in result.evaluations] == [512, 1024, 1536, 2048]


# rewards: the reward sums carry over from rollout to rollout, so the checkpoint must hold them
@pytest.mark.parametrize("return_std_from", ["returns", "rewards"])
def test_a_k_seed_job_stopped_midway_resumes_every_seed_to_the_same_returns(make_cfg, tmp_path, return_std_from):
    from abe.training.callbacks import Callback, Checkpointer
    from abe.training.loop import train_seeds

    class StopAtFirstEvaluation(Callback):
        def on_evaluation(self, trainer, records) -> bool:
            self.stop_reason = "stopped on purpose"
            return False

    cfg = make_cfg(
        "env=pendulum", "n_seeds=2", "seed=3", "logger=none", f"algo.return_std_from={return_std_from}", *RUN[1:]
    )
    whole = train_seeds(
        cfg, [cfg.with_seed(s) for s in (3, 4)], [tmp_path / "whole" / "seed_3", tmp_path / "whole" / "seed_4"]
    )
    job = tmp_path / "job"
    cut = [Checkpointer(member=0), Checkpointer(member=1), StopAtFirstEvaluation()]
    train_seeds(cfg, [cfg.with_seed(s) for s in (3, 4)], [job / "seed_3", job / "seed_4"], cut)
    assert read_checkpoint(job / "seed_4" / "checkpoints" / "last.pt")["env_steps"] == 1024
    proc = run_module("resume", str(job))
    assert proc.returncode == 0, proc.stderr[-2000:]
    for seed, uninterrupted in zip((3, 4), whole, strict=True):
        _, resumed = returns(job / f"seed_{seed}")
        assert resumed == [(e["env_steps"], e["eval/return_mean"]) for e in uninterrupted.evaluations]
    summary = json.loads((job / "result.json").read_text())
    assert summary["seeds"] == [3, 4] and summary["per_seed"] == [r.eval_return_mean for r in whole]
