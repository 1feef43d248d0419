"""One A2C update from a RolloutBatch: Tianshou's A2C math on arrays.

Tianshou's `A2C.update(buffer)` samples its replay buffer into a `Batch`, runs GAE over
it and splits it into minibatches; this module computes the same quantities from
time-major arrays (faster: bench/loop_profile.py) and reuses the parts of Tianshou's
A2C object that carry state: the networks, the distribution, the optimizer wrapper
(with its gradient clipping) and the running return statistics.
tests/unit/test_update.py checks that one update here leaves the weights that
Tianshou's own update leaves, to float rounding.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from abe.agent.agent import Agent
from abe.agent.rollout import RolloutBatch

# Added to the return statistics' variance before its square root, as Tianshou's A2C does
# (its `_eps`; tests/unit/test_compat.py checks they agree).
RETURN_EPS = 1e-8


def gae(
    rew: np.ndarray,
    v_s: np.ndarray,
    v_next: np.ndarray,
    terminated: np.ndarray,
    end: np.ndarray,
    gamma: float,
    gae_lambda: float,
) -> np.ndarray:
    """Generalised advantage estimates (Schulman et al. 2016), arrays of shape (T, N).

    `v_next` is V(obs_next), zeroed where the episode terminated (a time limit keeps
    it: bootstrap). `end` cuts the recursion: episode ends and the rollout's last step.
    """
    delta = rew + gamma * v_next * ~terminated - v_s
    discount = (1.0 - end) * (gamma * gae_lambda)
    advantages = np.zeros_like(delta)
    running = np.zeros(delta.shape[1])
    for t in range(delta.shape[0] - 1, -1, -1):
        running = delta[t] + discount[t] * running
        advantages[t] = running
    return advantages


def a2c_update(agent: Agent, batch: RolloutBatch) -> dict[str, float]:
    """One gradient step on the whole rollout; returns the three loss terms."""
    algo = agent.algorithm
    n_steps, num_envs = batch.rew.shape
    obs = torch.from_numpy(batch.obs.reshape(n_steps * num_envs, -1))
    value = algo.critic(obs).flatten()
    with torch.no_grad():
        v_next = algo.critic(torch.from_numpy(batch.obs_next.reshape(n_steps * num_envs, -1))).flatten()
    v_s = value.detach().cpu().numpy().astype(np.float64).reshape(n_steps, num_envs)
    v_next = v_next.cpu().numpy().astype(np.float64).reshape(n_steps, num_envs)
    advantages, targets = advantages_and_targets(agent, batch, v_s, v_next)
    valid = batch.valid.reshape(-1)
    device = value.device
    if not valid.all():
        mask = torch.from_numpy(valid)
        obs, value = obs[mask], value[mask.to(device)]
    act = torch.as_tensor(batch.act.reshape(n_steps * num_envs, -1)[valid], device=device)

    (mean, std), _ = agent.actor(obs)
    dist = agent.policy.dist_fn((mean, std))
    actor_loss = -(dist.log_prob(act) * torch.as_tensor(advantages, dtype=torch.float32, device=device)).mean()
    critic_loss = F.mse_loss(torch.as_tensor(targets, dtype=torch.float32, device=device), value)
    entropy = dist.entropy().mean()
    algo.optim.step(actor_loss + algo.vf_coef * critic_loss - algo.ent_coef * entropy)
    return {"loss/actor": actor_loss.item(), "loss/critic": critic_loss.item(), "loss/entropy": entropy.item()}


def advantages_and_targets(
    agent: Agent, batch: RolloutBatch, v_s: np.ndarray, v_next: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """GAE advantages and the critic's targets for the valid transitions, flat.

    With return scaling the critic predicts returns divided by a running std, so its
    values are scaled up for GAE and the targets scaled down; the statistics take in
    this rollout's returns afterwards (Tianshou's way), or its discounted reward sums
    (`agent.reward_sums`). Bootstrapped returns carry the critic's own values: on some
    seeds a critic that overshoots widens the std, which scales its values up further,
    and the std runs away (InvertedPendulum, Reacher: docs/lab-notes.md); reward sums
    do not depend on the critic."""
    algo = agent.algorithm
    if algo.return_scaling:
        scale = np.sqrt(algo.ret_rms.var + RETURN_EPS)
        v_s, v_next = v_s * scale, v_next * scale
    end = batch.terminated | batch.truncated
    end[-1] = True  # the episode goes on past the rollout: its tail is bootstrapped
    advantages = gae(batch.rew, v_s, v_next, batch.terminated, end, algo.gamma, algo.gae_lambda)
    returns = advantages + v_s
    valid = batch.valid.reshape(-1)
    returns, advantages = returns.reshape(-1)[valid], advantages.reshape(-1)[valid]
    if algo.return_scaling:
        targets = returns / np.sqrt(algo.ret_rms.var + RETURN_EPS)
        if agent.reward_sums is None:
            algo.ret_rms.update(returns)
        else:
            algo.ret_rms.update(discounted_reward_sums(agent.reward_sums, batch, algo.gamma))
    else:
        targets = returns
    if agent.normalize_advantage:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    return advantages, targets


def discounted_reward_sums(sums: np.ndarray, batch: RolloutBatch, gamma: float) -> np.ndarray:
    """Each env's running discounted reward sum after each of the rollout's valid steps,
    flat: G <- gamma * G + r, back to 0 after an episode ends (SB3's VecNormalize).
    `sums` (one per env) carries over from the last rollout and is updated in place."""
    after = np.zeros_like(batch.rew)
    for t in range(batch.rew.shape[0]):
        sums[:] = np.where(batch.valid[t], sums * gamma + batch.rew[t], sums)
        after[t] = sums
        sums[batch.terminated[t] | batch.truncated[t]] = 0.0
    return after.reshape(-1)[batch.valid.reshape(-1)]
