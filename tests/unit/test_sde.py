"""gSDE: the actions it samples have the density its log-probabilities say, its noise is
held for sde_sample_freq steps, and a seed's run repeats itself and ignores its neighbours."""

import numpy as np
import pytest
import torch

from abe.agent.agent import build_agent
from abe.agent.rollout import Rollout
from abe.agent.sde import StateDependentNoise
from abe.core.result import OBJECTIVE
from abe.envs.vector import make_vector_env
from abe.training.loop import train, train_seeds
from tests.conftest import TINY

SDE = ["network.sde=true", "network.log_std_init=-1"]


def agent_for(make_cfg, *overrides):
    cfg = make_cfg("env=halfcheetah", *SDE, *overrides)
    envs = make_vector_env(cfg.env.id, 2)
    agent = build_agent(cfg, envs.single_observation_space, envs.single_action_space)
    return agent, envs


def test_sampled_actions_have_the_density_of_their_log_probabilities(make_cfg):
    torch.manual_seed(0)
    agent, envs = agent_for(make_cfg)
    envs.close()
    with torch.no_grad():
        agent.actor.log_std.uniform_(-2.0, 0.0)  # a std that differs across the matrix
    obs = torch.randn(1, 17)
    draws = 20_000
    noise = StateDependentNoise(agent.actor, draws, -1, torch.Generator().manual_seed(1))
    with torch.no_grad():
        noise.draw()
        latent = agent.actor.mean_net[:-1](obs)
        (mean, std), _ = agent.actor(obs)
        actions = mean + noise.perturbation(latent.expand(draws, -1), slice(None))
        dist = agent.policy.dist_fn((mean.expand(draws, -1), std.expand(draws, -1)))
        log_prob = dist.log_prob(actions)
    # the variance of latent @ E over draws of E is the variance forward() reports
    np.testing.assert_allclose(actions.var(0).numpy(), (std**2).flatten().numpy(), rtol=0.05)
    # E[-log p(a)] over sampled actions is the entropy of the density: samples and
    # log-probabilities describe the same distribution (standard error here ~0.015)
    assert abs(-log_prob.mean().item() - dist.entropy()[0].item()) < 0.06
    assert (std > 0).all() and std.shape == mean.shape == (1, 6)


@pytest.mark.parametrize("freq,draws_per_rollout", [(-1, 1), (4, 2), (3, 3)])
def test_noise_is_drawn_at_each_rollout_and_every_sde_sample_freq_steps(make_cfg, monkeypatch, freq, draws_per_rollout):
    agent, envs = agent_for(make_cfg, f"algo.sde_sample_freq={freq}", "algo.n_steps=8")
    calls = []
    original = StateDependentNoise.draw
    monkeypatch.setattr(StateDependentNoise, "draw", lambda self: calls.append(1) or original(self))
    rollout = Rollout(agent, envs, n_steps=8, seed=0, generator=torch.Generator().manual_seed(0))
    rollout.collect()
    rollout.collect()
    envs.close()
    assert len(calls) == 2 * draws_per_rollout
    assert np.isfinite(rollout.batch.act).all() and rollout.batch.act.std() > 0


def test_an_sde_seed_repeats_itself_and_trains_the_same_beside_other_seeds(make_cfg, tmp_path):
    cfg = make_cfg("env=pendulum", *SDE, *TINY, "trainer.total_steps=1024", "trainer.eval_every=512")

    def returns(result):
        return [e[OBJECTIVE] for e in result.evaluations]

    alone = train(cfg.with_seed(4), tmp_path / "alone")
    together = train_seeds(cfg, [cfg.with_seed(s) for s in (3, 4)], [tmp_path / "t3", tmp_path / "t4"])
    assert returns(together[1]) == returns(alone) and len(returns(alone)) == 2  # float for float
    assert returns(together[0]) != returns(together[1])
