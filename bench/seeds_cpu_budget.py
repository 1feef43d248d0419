"""Where the CPU of K seeds trained together goes, and the rate it allows.

For each K: K HalfCheetah agents (experiment=halfcheetah: 32 envs each, EnvPool) collect
and update together as `n_seeds=K` does (abe.agent.rollout.collect_together, then one
A2C update per seed), without evaluation, tracking or callbacks. Reported per env step:
the training thread's CPU time in collection and in updates, the CPU time of every
other thread (EnvPool's workers: the physics), and the wall time. Then raw EnvPool on
the same K x 32 envs (random actions, no learning), laid out as training lays them out
(two pools of one thread per seed) and as one pool of one thread per core.

The bound: on C cores a step needs (its physics CPU + the training thread's CPU) / C
of wall time at best, so the rate is at most C / (physics + training thread). The
training thread's CPU per step is what K seeds in one process must shrink to get
close to raw EnvPool.

    .venv/bin/python bench/seeds_cpu_budget.py --seeds 1,2,4,8 --rollouts 300
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from abe.agent.agent import build_agent
from abe.agent.rollout import Rollout, collect_together
from abe.agent.update import a2c_update
from abe.commands.hydra_edge import compose, to_config
from abe.envs.vector import make_vector_env
from abe.training.seeding import seed_everything

CORES = os.cpu_count() or 1


def training(seeds: int, rollouts: int) -> dict:
    cfg = to_config(compose(["experiment=halfcheetah", "logger=none"]))
    with contextlib.ExitStack() as closing:
        members = []
        for seed in range(seeds):
            seed_everything(seed)
            envs = make_vector_env(cfg.env.id, cfg.trainer.num_envs, "envpool", {}, 0)
            closing.callback(envs.close)
            agent = build_agent(cfg, envs.single_observation_space, envs.single_action_space)
            generator = torch.Generator()
            generator.set_state(torch.get_rng_state())  # as abe.training.loop gives each seed its stream
            members.append((agent, Rollout(agent, envs, cfg.algo.n_steps, seed, generator)))
        rollout_list = [rollout for _, rollout in members]

        def round_() -> tuple[float, float]:
            start = time.thread_time()
            collect_together(rollout_list)
            middle = time.thread_time()
            for agent, rollout in members:
                a2c_update(agent, rollout.batch)
            return middle - start, time.thread_time() - middle

        for _ in range(30):  # warm-up
            round_()
        collect = update = 0.0
        wall, process = time.perf_counter(), time.process_time()
        for _ in range(rollouts):
            c, u = round_()
            collect, update = collect + c, update + u
        wall, process = time.perf_counter() - wall, time.process_time() - process
    steps = rollouts * cfg.algo.n_steps * cfg.trainer.num_envs * seeds
    return {
        "steps": steps,
        "rate": steps / wall,
        "collect_us": collect / steps * 1e6,
        "update_us": update / steps * 1e6,
        "others_us": (process - collect - update) / steps * 1e6,
    }


def raw(envs: int, pools: int, threads: int, steps: int) -> dict:
    import envpool

    size = envs // pools
    made = [
        envpool.make("HalfCheetah-v5", env_type="gymnasium", num_envs=size, num_threads=threads, seed=i * size)
        for i in range(pools)
    ]
    for pool in made:
        pool.reset()
    actions = np.random.default_rng(0).uniform(-1, 1, (size, 6)).astype(np.float32)
    ids = np.arange(size, dtype=np.int32)
    rounds = max(20, steps // envs)
    wall, process = time.perf_counter(), time.process_time()
    for _ in range(rounds):
        for pool in made:  # all pools step at once, as the training loop's groups do
            pool.send(actions, ids)
        for pool in made:
            pool.recv()
    wall, process = time.perf_counter() - wall, time.process_time() - process
    for pool in made:
        pool.close()
    return {"rate": rounds * envs / wall, "cpu_us": process / (rounds * envs) * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1,2,4,8")
    parser.add_argument("--rollouts", type=int, default=300, help="rollouts (and updates) per seed timed")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"HalfCheetah-v5, 32 envs per seed, EnvPool, {CORES} cores; CPU time per env step (us), rates in env steps/s")
    print(
        "  K   together  collect  update  others | raw as trained (CPU)  raw 1 pool (CPU) "
        "| bound  together/bound  together/raw"
    )
    for k in (int(s) for s in args.seeds.split(",")):
        t = training(k, args.rollouts)
        as_trained = raw(32 * k, 2 * k, 1, t["steps"])
        one_pool = raw(32 * k, 1, CORES, t["steps"])
        bound = CORES / ((as_trained["cpu_us"] + t["collect_us"] + t["update_us"]) * 1e-6)
        print(
            f"{k:3d} {t['rate']:10,.0f} {t['collect_us']:8.1f} {t['update_us']:7.1f} {t['others_us']:7.1f} "
            f"| {as_trained['rate']:10,.0f} ({as_trained['cpu_us']:4.1f})  {one_pool['rate']:9,.0f} "
            f"({one_pool['cpu_us']:4.1f}) | {bound:6,.0f} {t['rate'] / bound:10.0%} "
            f"{t['rate'] / one_pool['rate']:13.0%}",
            flush=True,
        )


if __name__ == "__main__":
    main()
