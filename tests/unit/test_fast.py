"""Each fast path of abe.core.fast gives the numbers of the call it replaces, to the bit;
and the one implementation of observation normalisation and action scaling agrees with
Tianshou's and with the exported policy."""

import dataclasses

import numpy as np
import pytest
import torch

from abe.agent.agent import build_agent
from abe.agent.export import deterministic_policy
from abe.agent.networks import build_mlp
from abe.agent.rollout import Rollout, RolloutGroup
from abe.agent.update import a2c_update
from abe.core.fast import inference_forward, stacked_forward_is_exact, stacked_inference_forward
from abe.envs.vector import make_vector_env
from abe.training.evaluation import agent_policy


@pytest.mark.parametrize(("activation", "layer_norm"), [("tanh", False), ("relu", False), ("elu", True)])
def test_inference_forward_gives_the_modules_numbers_and_follows_updates(activation, layer_norm):
    torch.manual_seed(0)
    mlp = build_mlp(17, 6, 64, 2, activation, layer_norm)
    forward = inference_forward(mlp)
    x = torch.randn(8, 17)
    with torch.no_grad():
        assert torch.equal(forward(x), mlp(x))  # bit for bit: the rollout's actions must not move
        for parameter in mlp.parameters():
            parameter.add_(0.1)
        assert torch.equal(forward(x), mlp(x))


def test_the_stacked_forward_gives_each_mlp_its_own_numbers_where_the_check_says_so():
    torch.manual_seed(0)
    mlps = [build_mlp(17, 6, 64, 2, "tanh", False) for _ in range(3)]
    groups = [slice(0, 8), slice(8, 16)]
    assert stacked_forward_is_exact(mlps, 16, groups)  # HalfCheetah's actor, 16 envs a seed
    forward = stacked_inference_forward(mlps)
    obs = torch.randn(3, 16, 17)
    with torch.no_grad():
        for group in groups:
            together = forward(obs[:, group])
            for i, mlp in enumerate(mlps):
                assert torch.equal(together[i], mlp(obs[i, group]))
    # Shapes whose batched kernel rounds differently (one env a group, Pendulum's 3 inputs),
    # and LayerNorm (its fused kernel), run one seed at a time.
    assert not stacked_forward_is_exact(mlps, 2, [slice(0, 1), slice(1, 2)])
    assert not stacked_forward_is_exact([build_mlp(3, 1, 64, 2, "tanh", False) for _ in range(2)], 2, [slice(0, 2)])
    layer_norm = [build_mlp(17, 6, 64, 2, "tanh", True) for _ in range(2)]
    assert stacked_inference_forward(layer_norm) is None and not stacked_forward_is_exact(layer_norm, 16, groups)


@pytest.mark.parametrize("layer_norm", [False, True])
def test_seeds_collected_together_fill_what_each_seed_alone_fills(make_cfg, layer_norm):
    # K seeds' rollouts share stacked arrays and (without LayerNorm) one forward pass per
    # step; each seed's stored steps must still be those of the seed collecting alone,
    # through updates in between.
    cfg = make_cfg("env=halfcheetah", "env.backend=envpool", f"network.layer_norm={layer_norm}", "logger=none")

    def collect(seeds: list[int]) -> tuple[bool, list]:
        rollouts, filled = [], []
        for seed in seeds:
            envs = make_vector_env("HalfCheetah-v5", 16, "envpool", {}, 2)
            torch.manual_seed(seed)
            agent = build_agent(cfg, envs.single_observation_space, envs.single_action_space)
            rollouts.append(Rollout(agent, envs, n_steps=8, seed=seed, generator=torch.Generator().manual_seed(seed)))
        group = RolloutGroup(rollouts)
        for _ in range(3):
            group.collect()
            filled.append([dataclasses.asdict(rollout.batch) for rollout in rollouts])  # copies
            for rollout in rollouts:
                a2c_update(rollout.agent, rollout.batch)
        for rollout in rollouts:
            rollout.envs.close()
        return group.stacked, filled

    stacked, together = collect([3, 4, 5])
    _, alone = collect([4])
    assert stacked is not layer_norm
    for beside, mine in zip(together, alone, strict=True):
        for key, array in mine[0].items():
            np.testing.assert_array_equal(beside[1][key], array, err_msg=key)
    assert not np.array_equal(together[0][0]["act"], together[0][1]["act"])


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
    assert ours._direct is not None  # abe's envs all take the direct path (abe.core.fast)
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


def test_action_scaling_matches_the_policys_map_action(make_cfg):
    cfg = make_cfg("env=halfcheetah", "logger=none")
    envs = make_vector_env("HalfCheetah-v5", 1)
    agent = build_agent(cfg, envs.single_observation_space, envs.single_action_space)
    envs.close()
    action = np.random.default_rng(0).normal(size=(5, 6)).astype(np.float32) * 2
    np.testing.assert_allclose(agent.actions.to_env(action), agent.policy.map_action(action), rtol=1e-6)


def test_the_exported_policy_acts_as_the_agent_does(make_cfg):
    cfg = make_cfg("env=hopper", "logger=none")
    envs = make_vector_env("Hopper-v5", 1)
    torch.manual_seed(0)
    agent = build_agent(cfg, envs.single_observation_space, envs.single_action_space)
    envs.close()
    rng = np.random.default_rng(0)
    agent.normalizer.update(rng.normal(3.0, 2.0, size=(500, 11)))
    obs = rng.normal(3.0, 4.0, size=(64, 11))  # some beyond the normaliser's clip
    exported = deterministic_policy(agent)
    with torch.no_grad():
        theirs = exported(torch.as_tensor(obs, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(theirs, agent_policy(agent)(obs), rtol=1e-5, atol=1e-5)
    assert np.abs(theirs).max() <= 1.0  # Hopper's bounds
