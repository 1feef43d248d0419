"""Training runs on every env preset, learns, and repeats itself exactly."""


import numpy as np
import pytest
import torch

from abe.agent import build_agent
from abe.envs import make_vector_env
from abe.evaluation import random_policy_returns
from abe.tracking import NullTracker
from abe.rollout import Rollout
from abe.training import seed_everything, train
from tests.conftest import TINY

ENV_PRESETS = ["pendulum", "mountaincar", "halfcheetah", "hopper", "walker2d"]


@pytest.mark.parametrize("env", ENV_PRESETS)
def test_short_run_on_every_env_preset(make_cfg, env, tmp_path):
    cfg = make_cfg(f"env={env}", *TINY)
    result = train(cfg, tmp_path, NullTracker())
    assert result["env_steps"] >= 256 and result["env_id"] == cfg.env.id
    assert [e["env_steps"] for e in result["evaluations"]][-1] == result["env_steps"]
    assert np.isfinite(result["eval/return_mean"]) and result["fps"] > 0
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert checkpoint["env_steps"] == result["env_steps"] and checkpoint["env_id"] == cfg.env.id
    assert "mean" in checkpoint["normalizer"]


def test_same_seed_same_returns_other_seed_other_returns(make_cfg, tmp_path):
    def returns(seed, name):
        cfg = make_cfg("env=pendulum", f"seed={seed}", *TINY[:-2], "trainer.total_steps=2048",
                       "trainer.eval_every=512", "logger=none")
        result = train(cfg, tmp_path / name, NullTracker())
        return [e["eval/return_mean"] for e in result["evaluations"]]

    first, again, other = returns(3, "a"), returns(3, "b"), returns(4, "c")
    assert len(first) == 4
    assert first == again  # exact, float for float
    assert first != other


def test_envpool_backend_repeats_itself_exactly(make_cfg, tmp_path):
    def returns(name):
        cfg = make_cfg("env=halfcheetah", "env.backend=envpool", "seed=5", *TINY[:-2], "trainer.num_envs=4",
                       "trainer.total_steps=1024", "trainer.eval_every=512", "logger=none")
        result = train(cfg, tmp_path / name, NullTracker())
        return [e["eval/return_mean"] for e in result["evaluations"]]

    first = returns("a")
    assert len(first) == 2 and first == returns("b")  # two pools stepping in threads, still exact


def test_rollout_samples_what_the_policys_gaussian_samples(make_cfg):
    # The rollout draws its actions in fewer torch calls than Normal(mean, std).sample();
    # it must draw the same numbers from the same random stream.
    cfg = make_cfg("env=halfcheetah", "env.backend=envpool", "trainer.num_envs=4", "logger=none")
    envs = make_vector_env("HalfCheetah-v5", 4, "envpool", {}, 2)
    agent = build_agent(cfg, envs.single_observation_space, envs.single_action_space)
    rollout = Rollout(agent, envs, n_steps=5, seed=0)
    torch.manual_seed(7)
    rollout.collect()
    envs.close()
    batch, std = rollout.batch, agent.actor.std().detach()
    torch.manual_seed(7)
    with torch.no_grad():
        for t in range(5):
            for group in envs.groups:  # the order the rollout draws in
                mean = agent.actor.mean_net(torch.from_numpy(batch.obs[t, group]))
                expected = torch.distributions.Normal(mean, std).sample().numpy()
                np.testing.assert_array_equal(batch.act[t, group], expected)


@pytest.mark.filterwarnings("ignore:.*precision lowered")  # EnvPool's own spaces
@pytest.mark.parametrize(("env_id", "direct"), [("Hopper-v5", True), ("Pendulum-v1", True), ("Hopper-v5", False)])
def test_envpool_backend_steps_as_envpools_own_api(env_id, direct):
    # EnvPoolVectorEnv calls EnvPool's C++ send/recv directly where it knows them (direct),
    # else EnvPool's public Python API; either must give that API's steps. A 20-step time
    # limit brings truncations; Hopper under random actions falls (terminations).
    import envpool

    limit = {"max_episode_steps": 20}
    ours = make_vector_env(env_id, 4, "envpool", limit, 2)
    assert ours._direct is not None  # abe's envs all take the direct path
    if not direct:
        ours._direct = None
    theirs = [envpool.make(env_id, env_type="gymnasium", num_envs=2, num_threads=1, seed=s, **limit) for s in (0, 2)]
    ours.reset(seed=0)
    for pool in theirs:
        pool.reset()
    act_dim = ours.single_action_space.shape[0]
    actions = np.random.default_rng(0).uniform(-1, 1, (300, 4, act_dim)).astype(np.float32)
    ends = np.zeros(2, int)
    for step_actions in actions:
        obs, reward, terminated, truncated, _ = ours.step(step_actions)
        for group, pool in zip(ours.groups, theirs, strict=True):
            expected = pool.step(step_actions[group])
            for mine, reference in zip((obs, reward, terminated, truncated), expected[:4], strict=True):
                np.testing.assert_array_equal(mine[group], reference)
        ends += terminated.sum(), truncated.sum()
    ours.close()
    assert ends[1] >= 4 and (ends[0] >= 4 or env_id == "Pendulum-v1")  # Pendulum never terminates


def test_rollout_learns_from_unclipped_float_actions_and_real_final_observations(make_cfg):
    # The tutorial cast actions to torch.long and took log-probs of clipped actions.
    # Pendulum truncates at 200 steps: the stored obs_next of that step must be the
    # real last observation, not the first observation of the next episode.
    cfg = make_cfg("env=pendulum", "trainer.num_envs=1", "algo.n_steps=200", "logger=none",
                   "network.log_std_init=1.0")
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


@pytest.mark.slow
def test_halfcheetah_learns_well_above_random(make_cfg, tmp_path):
    # The default setup at a fifth of its budget: ~30 s here. Seeds 0/1/2 reach
    # 526/469/623; a uniform random policy gets about -280 and standing still about 0.
    cfg = make_cfg("trainer.total_steps=200000", "trainer.eval_every=100000",
                   "trainer.progress_bar=false", "logger=none")
    result = train(cfg, tmp_path, NullTracker())
    envs = make_vector_env(cfg.env.id, cfg.trainer.eval_episodes)
    random_return = random_policy_returns(envs, cfg.seed).mean()
    envs.close()
    assert random_return < -150
    assert result["eval/return_mean"] > 300, result["evaluations"]
    assert result["eval/return_mean"] > random_return + 450
