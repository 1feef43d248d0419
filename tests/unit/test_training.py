"""Training runs on every env preset, learns, and repeats itself exactly."""

import numpy as np
import pytest
import torch

from abe import CONFIG_DIR
from abe.agent.agent import build_agent
from abe.agent.rollout import Rollout
from abe.core.result import OBJECTIVE
from abe.envs.vector import make_vector_env
from abe.training.callbacks import Callback, Checkpointer
from abe.training.loop import train, train_seeds
from abe.training.seeding import seed_everything
from tests.conftest import TINY

ENV_PRESETS = sorted(p.stem for p in (CONFIG_DIR / "env").glob("*.yaml"))


@pytest.mark.parametrize("env", ENV_PRESETS)
def test_short_run_on_every_env_preset(make_cfg, env, tmp_path):
    cfg = make_cfg(f"env={env}", *TINY)
    result = train(cfg, tmp_path, [Checkpointer()])
    assert result.env_steps >= 256 and result.env_id == cfg.env.id
    assert [e["env_steps"] for e in result.evaluations][-1] == result.env_steps
    assert np.isfinite(result.eval_return_mean) and result.fps > 0
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert checkpoint["env_steps"] == result.env_steps and checkpoint["env_id"] == cfg.env.id
    assert "mean" in checkpoint["normalizer"]


def test_same_seed_same_returns_other_seed_other_returns(make_cfg, tmp_path):
    def returns(seed, name):
        cfg = make_cfg(
            "env=pendulum",
            f"seed={seed}",
            *TINY[:-2],
            "trainer.total_steps=2048",
            "trainer.eval_every=512",
            "logger=none",
        )
        result = train(cfg, tmp_path / name)
        return [e[OBJECTIVE] for e in result.evaluations]

    first, again, other = returns(3, "a"), returns(3, "b"), returns(4, "c")
    assert len(first) == 4
    assert first == again  # exact, float for float
    assert first != other


def test_envpool_backend_repeats_itself_exactly(make_cfg, tmp_path):
    def returns(name):
        cfg = make_cfg(
            "env=halfcheetah",
            "env.backend=envpool",
            "seed=5",
            *TINY[:-2],
            "trainer.num_envs=4",
            "trainer.total_steps=1024",
            "trainer.eval_every=512",
            "logger=none",
        )
        result = train(cfg, tmp_path / name)
        return [e[OBJECTIVE] for e in result.evaluations]

    first = returns("a")
    assert len(first) == 2 and first == returns("b")  # two pools stepping in threads, still exact


def test_rollout_learns_from_unclipped_float_actions_and_real_final_observations(make_cfg):
    # The tutorial cast actions to torch.long and took log-probs of clipped actions.
    # Pendulum truncates at 200 steps: the stored obs_next of that step must be the
    # real last observation, not the first observation of the next episode.
    cfg = make_cfg("env=pendulum", "trainer.num_envs=1", "algo.n_steps=200", "logger=none", "network.log_std_init=1.0")
    seed_everything(0)
    envs = make_vector_env("Pendulum-v1", 1)
    agent = build_agent(cfg, envs.single_observation_space, envs.single_action_space)
    rollout = Rollout(agent, envs, n_steps=200, seed=0)
    finished = rollout.collect()
    batch = rollout.batch  # arrays of shape (step, env, ...)
    assert batch.act.dtype == np.float32
    assert np.abs(batch.act).max() > 1.0, "stored actions must be the sampled ones, before clipping"
    assert len(finished) == 1 and batch.truncated[-1, 0] and not batch.terminated.any() and batch.valid.all()
    assert not np.allclose(batch.obs_next[-1], rollout.obs), "obs_next of the last step is the reset obs"
    np.testing.assert_allclose(batch.obs_next[:-1], batch.obs[1:])  # the rest chain up
    envs.close()


class StopAfter(Callback):
    def __init__(self, evaluations: int):
        self.left = evaluations

    def on_evaluation(self, trainer, records) -> bool:
        self.left -= 1
        if self.left == 0:
            self.stop_reason = f"stopped at {records[0]['env_steps']:,} env steps"
        return self.left > 0


def test_a_callback_stops_training_at_an_evaluation_and_says_why(make_cfg, tmp_path):
    cfg = make_cfg("env=pendulum", *TINY, "trainer.total_steps=2048", "trainer.eval_every=256")
    full = train(cfg, tmp_path / "full")
    stopped = train(cfg, tmp_path / "stopped", [StopAfter(2), Checkpointer()])
    assert stopped.stopped_early == "stopped at 512 env steps" and stopped.env_steps == 512

    def returns(result):
        return [e[OBJECTIVE] for e in result.evaluations]

    assert returns(stopped) == returns(full)[:2] and full.stopped_early is None  # the same run until the stop
    checkpoint = torch.load(tmp_path / "stopped" / "checkpoints" / "last.pt", weights_only=True)
    assert checkpoint["env_steps"] == 512  # every callback ran at the stopping evaluation


def test_lr_decay_anneals_to_zero_over_the_budget(make_cfg, tmp_path):
    cfg = make_cfg(
        "env=pendulum", *TINY, "trainer.total_steps=1024", "trainer.eval_every=256", "algo.lr_decay=true", "lr=1e-3"
    )
    lrs = [e["train/lr"] for e in train(cfg, tmp_path).evaluations]
    assert lrs == pytest.approx([7.5e-4, 5e-4, 2.5e-4, 0.0])


@pytest.mark.parametrize("backend", ["sync", "envpool"])
def test_a_seed_trains_the_same_whichever_seeds_train_beside_it(make_cfg, tmp_path, backend):
    # Each member has its own networks, optimizer, statistics, envs and action-noise
    # stream, so seed 4 of a 3-seed job is seed 4 alone, float for float.
    cfg = make_cfg(
        "env=pendulum",
        f"env.backend={backend}",
        *TINY,
        "trainer.total_steps=1024",
        "trainer.eval_every=512",
        "trainer.num_envs=4",
    )

    def returns(result):
        return [e[OBJECTIVE] for e in result.evaluations]

    together = train_seeds(
        cfg, [cfg.with_seed(s) for s in (3, 4, 5)], [tmp_path / f"t{s}" for s in (3, 4, 5)], [Checkpointer(member=1)]
    )
    alone = train(cfg.with_seed(4), tmp_path / "alone")
    assert returns(together[1]) == returns(alone) and len(returns(alone)) == 2
    assert returns(together[0]) != returns(together[1]) != returns(together[2])
    again = train_seeds(cfg, [cfg.with_seed(s) for s in (3, 4, 5)], [tmp_path / f"a{s}" for s in (3, 4, 5)])
    assert [returns(r) for r in again] == [returns(r) for r in together]  # the same job repeats itself exactly
    checkpoint = torch.load(tmp_path / "t4" / "checkpoints" / "last.pt", weights_only=True)
    assert checkpoint["env_steps"] == 1024 and yaml_seed(checkpoint) == 4  # each seed its own checkpoint


def yaml_seed(checkpoint: dict) -> int:
    import yaml

    return yaml.safe_load(checkpoint["config"])["seed"]


class Records(Callback):
    def __init__(self):
        self.seen = []

    def on_evaluation(self, trainer, records) -> bool:
        self.seen.append([r["env_steps"] for r in records])
        return True


def test_callbacks_see_one_record_per_seed_at_every_evaluation(make_cfg, tmp_path):
    cfg = make_cfg("env=pendulum", *TINY, "trainer.total_steps=512", "trainer.eval_every=256")
    seen = Records()
    train_seeds(cfg, [cfg.with_seed(s) for s in (0, 1)], [tmp_path / "a", tmp_path / "b"], [seen])
    assert seen.seen == [[256, 256], [512, 512]]
