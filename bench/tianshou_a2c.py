"""Tianshou 2.0.1's own A2C MuJoCo example, on a v5 env, beside abe's numbers.

Tianshou's published A2C returns (examples/mujoco/README.md, "Tianshou (1M)": Hopper
1253.2, Walker2d 1091.6, ...) come from its examples/mujoco/mujoco_a2c.py on gym's v3 envs.
abe trains on Gymnasium's v5 envs, which differ (Hopper-v5 pays its healthy reward only
while healthy; Walker2d-v5 gives both feet the same friction). This script runs the
example's training on any Gymnasium env id (a v5 env, or the v4 one that keeps v3's model)
with the example's settings and Tianshou's own parts (Net, ContinuousActorProbabilistic,
A2C with return scaling, RMSprop with the linear lr schedule, Collector,
VectorReplayBuffer, the on-policy trainer, running observation normalisation shared with
the test envs), so a gap between abe and a published number can be put on the env version
or on abe's agent (docs/lab-notes.md, "Tianshou's own A2C on Walker2d v5 and v4").

The example's settings: 64x64 tanh actor and critic, orthogonal init, the policy head
scaled by 0.01, log-std -0.5, RMSprop lr 7e-4 (eps 1e-5, alpha 0.99) annealed linearly
over 100 epochs of 30,000 steps, gamma 0.99, GAE 0.95, vf 0.5, entropy 0.01, grad norm
0.5, 16 training envs x 80 steps per update, 10 test episodes after every epoch, actions
clipped. The README's A2C runs are 3M steps; its 1M column considers "only the first 1M
steps" (its footnote 5), so this script keeps the 3M schedule and stops after the epoch
that reaches --steps. Differences from the script: Gymnasium's envs in shared-memory
subprocesses, never EnvPool (abe's venv has EnvPool, which the example would switch to,
with its own MuJoCo build); no tensorboard.

    .venv/bin/python bench/tianshou_a2c.py --env Walker2d-v5 --seeds 0 1 2
    .venv/bin/python bench/tianshou_a2c.py --env Walker2d-v4 --seeds 0 1 2
    .venv/bin/python bench/tianshou_a2c.py --env Hopper-v5 --seeds 0 --steps 60000   # a quick look

Writes one JSON per seed (every epoch's test mean) under --out and prints, per seed, the
final test mean and the best test mean during training (Tianshou's measure), and their
mean and std over seeds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EPOCHS, EPOCH_STEPS, STEPS_PER_COLLECT = 100, 30_000, 80
TRAIN_ENVS, TEST_ENVS = 16, 10


def build(env_id: str, seed: int):
    """The example's envs and algorithm (mujoco_a2c.py's main, up to the trainer)."""
    import gymnasium as gym
    import numpy as np
    import torch
    from tianshou.algorithm import A2C
    from tianshou.algorithm.modelfree.reinforce import ProbabilisticActorPolicy
    from tianshou.algorithm.optim import LRSchedulerFactoryLinear, RMSpropOptimizerFactory
    from tianshou.env import ShmemVectorEnv, VectorEnvNormObs
    from tianshou.utils.net.common import ActorCritic, Net
    from tianshou.utils.net.continuous import ContinuousActorProbabilistic, ContinuousCritic
    from torch import nn
    from torch.distributions import Independent, Normal

    env = gym.make(env_id)
    training_envs = VectorEnvNormObs(ShmemVectorEnv([lambda: gym.make(env_id)] * TRAIN_ENVS))
    test_envs = VectorEnvNormObs(ShmemVectorEnv([lambda: gym.make(env_id)] * TEST_ENVS), update_obs_rms=False)
    test_envs.set_obs_rms(training_envs.get_obs_rms())  # the test envs see the running statistics
    training_envs.seed(seed)
    test_envs.seed(seed + 1)
    np.random.seed(seed)
    torch.manual_seed(seed)

    action_space = env.action_space
    obs_shape, action_shape = env.observation_space.shape, action_space.shape
    env.close()  # only its spaces were needed
    actor = ContinuousActorProbabilistic(
        preprocess_net=Net(state_shape=obs_shape, hidden_sizes=[64, 64], activation=nn.Tanh),
        action_shape=action_shape,
        unbounded=True,
    )
    critic = ContinuousCritic(preprocess_net=Net(state_shape=obs_shape, hidden_sizes=[64, 64], activation=nn.Tanh))
    torch.nn.init.constant_(actor.sigma_param, -0.5)
    for module in ActorCritic(actor, critic).modules():
        if isinstance(module, nn.Linear):
            nn.init.orthogonal_(module.weight, gain=np.sqrt(2))
            nn.init.zeros_(module.bias)
    for module in actor.mu.modules():  # the last policy layer near zero: initial actions near 0
        if isinstance(module, nn.Linear):
            nn.init.zeros_(module.bias)
            module.weight.data.copy_(0.01 * module.weight.data)

    optim = RMSpropOptimizerFactory(lr=7e-4, eps=1e-5, alpha=0.99)
    optim.with_lr_scheduler_factory(
        LRSchedulerFactoryLinear(
            max_epochs=EPOCHS, epoch_num_steps=EPOCH_STEPS, collection_step_num_env_steps=STEPS_PER_COLLECT
        )
    )

    def dist(loc_scale):
        loc, scale = loc_scale
        return Independent(Normal(loc, scale), 1)

    policy = ProbabilisticActorPolicy(
        actor=actor, dist_fn=dist, action_scaling=True, action_bound_method="clip", action_space=action_space
    )
    algorithm = A2C(
        policy=policy,
        critic=critic,
        optim=optim,
        gamma=0.99,
        gae_lambda=0.95,
        max_grad_norm=0.5,
        vf_coef=0.5,
        ent_coef=0.01,
        return_scaling=True,
    )
    return algorithm, training_envs, test_envs


def train(env_id: str, seed: int, steps: int) -> dict:
    from tianshou.data import Collector, VectorReplayBuffer
    from tianshou.trainer import OnPolicyTrainerParams

    algorithm, training_envs, test_envs = build(env_id, seed)
    training_collector = Collector(
        algorithm, training_envs, VectorReplayBuffer(4096, TRAIN_ENVS), exploration_noise=True
    )
    test_collector = Collector(algorithm, test_envs)
    logger = returns_logger()
    epochs = -(-steps // EPOCH_STEPS)  # the epochs that reach `steps`; the lr schedule keeps EPOCHS
    start = time.perf_counter()
    result = algorithm.run_training(
        OnPolicyTrainerParams(
            training_collector=training_collector,
            test_collector=test_collector,
            max_epochs=epochs,
            epoch_num_steps=EPOCH_STEPS,
            update_step_num_repetitions=1,
            test_step_num_episodes=TEST_ENVS,
            batch_size=None,
            collection_step_num_env_steps=STEPS_PER_COLLECT,
            test_in_training=False,
            logger=logger,
        )
    )
    for env in (training_envs, test_envs):
        env.close()
    tests = logger.tests
    return {
        "env": env_id,
        "seed": seed,
        "env_steps": result.train_step,
        "final": tests[-1][1],
        "best_during_training": max(mean for _, mean in tests),
        "tianshou_best_reward": float(result.best_reward),
        "tests": tests,
        "seconds": round(time.perf_counter() - start, 1),
    }


def returns_logger():
    """A Tianshou logger that keeps each test's mean return, (env step, mean)."""
    from tianshou.utils.logger.logger_base import LazyLogger

    class TestReturns(LazyLogger):
        def __init__(self):
            super().__init__()
            self.tests: list[tuple[int, float]] = []

        def log_test_data(self, log_data: dict, step: int) -> None:
            self.tests.append((step, float(log_data["returns_stat"]["mean"])))

    return TestReturns()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="Hopper-v5")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "tianshou_a2c")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for seed in args.seeds:
        row = train(args.env, seed, args.steps)
        (args.out / f"{args.env}_seed{seed}.json").write_text(json.dumps(row, indent=1) + "\n")
        print(json.dumps(row), flush=True)
        rows.append(row)
    for key in ("final", "best_during_training"):
        values = [row[key] for row in rows]
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        print(f"{args.env} {key}: {statistics.mean(values):.1f} +- {spread:.1f} over seeds {args.seeds}")


if __name__ == "__main__":
    main()
