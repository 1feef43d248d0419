"""Where the training loop's time goes: wall and CPU time of collection and update.

Runs abe's Rollout and A2C update (no evaluation, no tracking) on HalfCheetah-v5 with
16 envs and reports, per 16-env step, the wall time and the training thread's own CPU
time of each part, plus the whole process's CPU/wall ratio (2.0 = both cores busy).
docs/benchmarks.md ("Training throughput") quotes this script.

    .venv/bin/python bench/loop_profile.py [--backend envpool] [--rollouts 800]
"""

from __future__ import annotations

import argparse
import time

import torch

from abe.agent.agent import build_agent
from abe.agent.rollout import Rollout
from abe.agent.update import a2c_update
from abe.commands.hydra_edge import compose, to_config
from abe.envs.vector import make_vector_env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="envpool")
    parser.add_argument("--rollouts", type=int, default=800)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = to_config(compose(["logger=none", f"env.backend={args.backend}"]))
    envs = make_vector_env(cfg.env.id, cfg.trainer.num_envs, args.backend, {}, 0)
    agent = build_agent(cfg, envs.single_observation_space, envs.single_action_space)
    rollout = Rollout(agent, envs, cfg.algo.n_steps, 0)
    for _ in range(50):  # warm-up
        rollout.collect()
        a2c_update(agent, rollout.batch)
    wall = {"collect": 0.0, "update": 0.0}
    cpu = {"collect": 0.0, "update": 0.0}
    start, process_start = time.perf_counter(), time.process_time()
    for _ in range(args.rollouts):
        for part, work in (("collect", rollout.collect), ("update", lambda: a2c_update(agent, rollout.batch))):
            t, c = time.perf_counter(), time.thread_time()
            work()
            wall[part] += time.perf_counter() - t
            cpu[part] += time.thread_time() - c
    total = time.perf_counter() - start
    envs.close()
    vector_steps = args.rollouts * cfg.algo.n_steps
    per = {k: 1e6 / vector_steps for k in wall}
    print(
        f"{cfg.env.id}, {cfg.trainer.num_envs} envs, backend={args.backend}: "
        f"{vector_steps * cfg.trainer.num_envs / total:,.0f} env steps/s without evaluation"
    )
    for part in wall:
        print(
            f"  {part:8s} per 16-env step: wall {wall[part] * per[part]:6.0f} us, "
            f"training thread CPU {cpu[part] * per[part]:6.0f} us"
        )
    print(f"  process CPU / wall: {(time.process_time() - process_start) / total:.2f}")
    print(
        f"  one update on the same {cfg.algo.n_steps * cfg.trainer.num_envs} transitions: "
        f"abe.update {time_update(lambda: a2c_update(agent, rollout.batch)):.2f} ms, "
        f"Tianshou's A2C.update(buffer) {time_update(tianshou_update(agent, rollout.batch)):.2f} ms"
    )


def tianshou_update(agent, batch):
    """Tianshou's own update of the same rollout, through its VectorReplayBuffer."""
    from tianshou.data import Batch, VectorReplayBuffer
    from tianshou.utils.torch_utils import policy_within_training_step

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

    def update():
        with policy_within_training_step(agent.policy):
            agent.algorithm.update(buffer=buffer, batch_size=None, repeat=1)

    return update


def time_update(update, repeats: int = 300) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        update()
    return (time.perf_counter() - start) / repeats * 1e3


if __name__ == "__main__":
    main()
