"""abe's array-based A2C update does what Tianshou's A2C.update does, and the
EnvPool backend's autoreset steps never reach the loss."""

import copy

import numpy as np
import pytest
import torch
from tianshou.data import Batch, VectorReplayBuffer
from tianshou.utils.torch_utils import policy_within_training_step

from abe.agent.agent import build_agent
from abe.agent.rollout import Rollout, RolloutBatch
from abe.agent.update import a2c_update, discounted_reward_sums, gae
from abe.envs.vector import make_vector_env


def random_rollout(rng, n_steps=6, num_envs=3, obs_dim=3, act_dim=1) -> RolloutBatch:
    batch = RolloutBatch.empty(n_steps, num_envs, obs_dim, act_dim)
    batch.obs[:] = rng.normal(size=batch.obs.shape)
    batch.obs_next[:] = rng.normal(size=batch.obs_next.shape)
    batch.act[:] = rng.normal(size=batch.act.shape) * 2  # some beyond the [-1, 1] bounds
    batch.rew[:] = rng.normal(size=batch.rew.shape)
    if num_envs == 3:
        batch.terminated[2, 0] = batch.truncated[4, 1] = True  # one of each, mid-rollout
        batch.terminated[5, 2] = True  # and one on the last step
    return batch


def tianshou_buffer(batch: RolloutBatch) -> VectorReplayBuffer:
    n_steps, num_envs = batch.rew.shape
    buffer = VectorReplayBuffer(total_size=n_steps * num_envs, buffer_num=num_envs)
    for t in range(n_steps):
        buffer.add(
            Batch(
                obs=batch.obs[t],
                act=batch.act[t],
                rew=batch.rew[t],
                terminated=batch.terminated[t],
                truncated=batch.truncated[t],
                obs_next=batch.obs_next[t],
                info={},
            )
        )
    return buffer


@pytest.mark.parametrize("return_scaling", [True, False])
def test_update_leaves_the_weights_tianshous_update_leaves(make_cfg, return_scaling):
    cfg = make_cfg("env=pendulum", "logger=none", f"algo.return_scaling={return_scaling}", "algo.ent_coef=0.01")
    envs = make_vector_env("Pendulum-v1", 1)
    torch.manual_seed(0)
    ours = build_agent(cfg, envs.single_observation_space, envs.single_action_space)
    envs.close()
    theirs = copy.deepcopy(ours)
    rng = np.random.default_rng(0)
    for _ in range(3):  # three updates: the running return statistics matter from the second on
        batch = random_rollout(rng)
        losses = a2c_update(ours, batch)
        with policy_within_training_step(theirs.policy):
            stats = theirs.algorithm.update(buffer=tianshou_buffer(batch), batch_size=None, repeat=1)
        assert losses["loss/actor"] == pytest.approx(stats.actor_loss.mean, rel=1e-5)
        assert losses["loss/critic"] == pytest.approx(stats.vf_loss.mean, rel=1e-5)
        assert losses["loss/entropy"] == pytest.approx(stats.ent_loss.mean, rel=1e-5)
    for (name, mine), (_, reference) in zip(
        ours.algorithm.named_parameters(), theirs.algorithm.named_parameters(), strict=True
    ):
        torch.testing.assert_close(mine, reference, rtol=1e-5, atol=1e-6, msg=name)
    assert ours.algorithm.ret_rms.var == pytest.approx(theirs.algorithm.ret_rms.var, rel=1e-6)


@pytest.mark.parametrize("optimizer", ["optimizer=adam", "optimizer=rmsprop", "optimizer=sgd optimizer.momentum=0.9"])
def test_the_optimizers_foreach_steps_leave_the_weights_of_one_tensor_at_a_time(make_cfg, optimizer):
    cfg = make_cfg("env=pendulum", "logger=none", *optimizer.split(), "optimizer.weight_decay=1e-4")
    envs = make_vector_env("Pendulum-v1", 1)
    torch.manual_seed(0)
    ours = build_agent(cfg, envs.single_observation_space, envs.single_action_space)
    envs.close()
    looped = copy.deepcopy(ours)
    assert ours.optimizer.param_groups[0]["foreach"] is True
    looped.optimizer.param_groups[0]["foreach"] = False
    rng = np.random.default_rng(0)
    for _ in range(3):
        batch = random_rollout(rng)
        a2c_update(ours, batch)
        a2c_update(looped, batch)
    for mine, reference in zip(ours.algorithm.parameters(), looped.algorithm.parameters(), strict=True):
        assert torch.equal(mine, reference)


@pytest.mark.parametrize("normalize", [True, False])
def test_normalized_advantages_make_the_actor_step_blind_to_the_reward_scale(make_cfg, normalize):
    # With V = 0 and no return scaling, rewards x 100 give advantages x 100: normalised,
    # the actor takes the same step; raw, a different one.
    cfg = make_cfg(
        "env=pendulum",
        "logger=none",
        "algo.return_scaling=false",
        "algo.vf_coef=0",
        "algo.max_grad_norm=null",
        "optimizer=sgd",
        f"algo.normalize_advantage={normalize}",
    )
    envs = make_vector_env("Pendulum-v1", 1)
    torch.manual_seed(0)
    agent = build_agent(cfg, envs.single_observation_space, envs.single_action_space)
    envs.close()
    with torch.no_grad():
        agent.critic.value_net[-1].weight.zero_()
    scaled = copy.deepcopy(agent)
    batch = random_rollout(np.random.default_rng(0))
    a2c_update(agent, batch)
    batch.rew *= 100
    a2c_update(scaled, batch)
    same = all(
        torch.allclose(a, b, rtol=1e-4, atol=1e-6)
        for a, b in zip(agent.actor.parameters(), scaled.actor.parameters(), strict=True)
    )
    assert same == normalize


def test_gae_by_hand():
    # One env, three steps, the episode terminates after step 1 (index 1).
    rew = np.array([[1.0], [2.0], [3.0]])
    v_s = np.array([[0.5], [0.25], [1.0]])
    v_next = np.array([[0.25], [9.0], [2.0]])  # 9.0 follows a terminal step: never used
    terminated = np.array([[False], [True], [False]])
    end = np.array([[False], [True], [True]])
    adv = gae(rew, v_s, v_next, terminated, end, gamma=0.9, gae_lambda=0.5)
    d2 = 3.0 + 0.9 * 2.0 - 1.0  # last step: bootstrapped from V(obs_next)
    d1 = 2.0 - 0.25  # terminal: no bootstrap
    d0 = 1.0 + 0.9 * 0.25 - 0.5
    np.testing.assert_allclose(adv[:, 0], [d0 + 0.9 * 0.5 * d1, d1, d2])


def test_reward_sums_by_hand():
    # Two envs over two rollouts of two steps: env 0's episode terminates at step 1 of the
    # first rollout, env 1's is truncated at step 0 of the second, and step 1 there is an
    # EnvPool reset step (not a transition: its sum stays out and the sum stays 0).
    sums, gamma = np.zeros(2), 0.5
    first = RolloutBatch.empty(2, 2, 1, 1)
    first.rew[:] = [[1.0, 2.0], [4.0, 8.0]]
    first.terminated[1, 0] = True
    np.testing.assert_allclose(discounted_reward_sums(sums, first, gamma), [1.0, 2.0, 4.5, 9.0])
    np.testing.assert_allclose(sums, [0.0, 9.0])  # env 0 starts a new episode
    second = RolloutBatch.empty(2, 2, 1, 1)
    second.rew[:] = [[16.0, 32.0], [64.0, 0.0]]
    second.truncated[0, 1] = True
    second.valid[1, 1] = False
    np.testing.assert_allclose(discounted_reward_sums(sums, second, gamma), [16.0, 36.5, 72.0])
    np.testing.assert_allclose(sums, [72.0, 0.0])


@pytest.mark.parametrize("source", ["returns", "rewards"])
def test_the_return_std_from_rewards_ignores_the_critic(make_cfg, source):
    # Tianshou's return scaling takes its std from bootstrapped returns, so a critic
    # that overshoots widens it (the runaway on some seeds); from reward sums, it is the
    # std of those sums whatever the critic says.
    cfg = make_cfg("env=pendulum", "logger=none", "trainer.num_envs=3", f"algo.return_std_from={source}")
    envs = make_vector_env("Pendulum-v1", 1)
    torch.manual_seed(0)
    agent = build_agent(cfg, envs.single_observation_space, envs.single_action_space)
    envs.close()
    overshooting = copy.deepcopy(agent)
    with torch.no_grad():
        overshooting.critic.value_net[-1].bias.fill_(1000.0)
    batch = random_rollout(np.random.default_rng(0))
    for each in (agent, overshooting):
        a2c_update(each, copy.deepcopy(batch))
    stds = [np.sqrt(each.algorithm.ret_rms.var) for each in (agent, overshooting)]
    if source == "rewards":
        expected = np.std(discounted_reward_sums(np.zeros(3), batch, cfg.gamma))
        np.testing.assert_allclose(stds, [expected, expected], rtol=1e-9)
    else:
        assert stds[1] > 10 * stds[0]


def test_autoreset_steps_are_masked_out_and_change_nothing(make_cfg):
    # EnvPool resets an env on the step after its episode ended; that step's action is
    # ignored. A batch with such a step must update exactly like the batch without it.
    cfg = make_cfg("env=pendulum", "logger=none")
    envs = make_vector_env("Pendulum-v1", 1)
    torch.manual_seed(0)
    agent = build_agent(cfg, envs.single_observation_space, envs.single_action_space)
    envs.close()
    other = copy.deepcopy(agent)
    batch = random_rollout(np.random.default_rng(1), num_envs=1)
    batch.terminated[2, 0] = True
    with_reset = copy.deepcopy(batch)
    with_reset.valid[3, 0] = False
    with_reset.act[3, 0] = 100.0  # would dominate the loss if it counted
    a2c_update(agent, with_reset)
    # The same learning signal as two separate rollouts' worth of data without step 3.
    kept = [0, 1, 2, 4, 5]
    without = RolloutBatch(**{k: getattr(batch, k)[kept] for k in batch.__dataclass_fields__})
    without.terminated[2, 0] = True
    a2c_update(other, without)
    for mine, reference in zip(agent.algorithm.parameters(), other.algorithm.parameters(), strict=True):
        torch.testing.assert_close(mine, reference, rtol=1e-5, atol=1e-6)


def test_envpool_rollout_marks_the_step_after_each_episode_end(make_cfg):
    cfg = make_cfg("env=pendulum", "env.backend=envpool", "trainer.num_envs=4", "logger=none")
    envs = make_vector_env("Pendulum-v1", 4, "envpool", {}, 2)
    agent = build_agent(cfg, envs.single_observation_space, envs.single_action_space)
    rollout = Rollout(agent, envs, n_steps=210, seed=0)  # Pendulum truncates at 200 steps
    finished = rollout.collect()
    batch = rollout.batch
    envs.close()
    assert len(finished) == 4 and batch.truncated[199].all() and not batch.terminated.any()
    assert not batch.valid[200].any() and batch.valid[:200].all() and batch.valid[201:].all()
    assert np.all(batch.rew[200] == 0.0)
