"""Where the CPU of K seeds trained together goes, and the rate it allows.

For each K: K HalfCheetah agents (experiment=halfcheetah: 32 envs each, EnvPool) collect
and update together as `n_seeds=K` does (abe.agent.rollout.RolloutGroup, then one
A2C update per seed), without evaluation, tracking or callbacks. Reported per env step:
the training thread's CPU time in collection and in updates, the CPU time of every
other thread (EnvPool's workers: the physics), and the wall time. Then raw EnvPool on
the same K x 32 envs (random actions, no learning), laid out as training lays them out
(two pools of one thread per seed) and as one pool of one thread per core.

The bound: on C cores a step needs (its physics CPU + the training thread's CPU) / C
of wall time at best, so the rate is at most C / (physics + training thread). The
training thread's CPU per step is what K seeds in one process must shrink to get
close to raw EnvPool.

The ceiling against separate processes: single-seed processes that keep every core busy
spend (physics + the K=1 training thread) of CPU per env step, K seeds together
(physics + the K-seed training thread), so together/apart can be at most the ratio of
the two; "needed" is the K-seed training thread's CPU per step that a ratio of 1.3 would
take. MuJoCo's physics alone (`mujoco.mj_step`, HalfCheetah-v5's 5 substeps per env
step, one thread, no EnvPool) is printed first: the part no framework can remove.

    .venv/bin/python bench/seeds_cpu_budget.py --seeds 1,2,4,8 --rollouts 300
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time
from pathlib import Path

import torch
from seeds_throughput import NUM_ENVS, raw  # raw EnvPool on the same envs

from abe.agent.rollout import RolloutGroup
from abe.agent.update import a2c_update
from abe.commands.hydra_edge import compose, to_config
from abe.training.loop import build_member

CORES = os.cpu_count() or 1


def training(seeds: int, rollouts: int) -> dict:
    cfg = to_config(compose(["experiment=halfcheetah", "logger=none"]))
    with contextlib.ExitStack() as closing, tempfile.TemporaryDirectory(prefix="abe-cpu-budget-") as tmp:
        members = [build_member(cfg.with_seed(seed), Path(tmp), None, closing) for seed in range(seeds)]
        group = RolloutGroup([member.rollout for member in members])

        def round_() -> tuple[float, float]:
            start = time.thread_time()
            group.collect()
            middle = time.thread_time()
            for member in members:
                a2c_update(member.agent, member.rollout.batch)
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


def physics(steps: int = 20_000) -> float:
    """CPU time (us) of one HalfCheetah-v5 env step's MuJoCo physics alone, one thread."""
    import gymnasium as gym
    import mujoco

    env = gym.make("HalfCheetah-v5").unwrapped
    env.reset(seed=0)
    start = time.process_time()
    for _ in range(steps):
        mujoco.mj_step(env.model, env.data, nstep=env.frame_skip)
    used = time.process_time() - start
    env.close()
    return used / steps * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1,2,4,8")
    parser.add_argument("--rollouts", type=int, default=300, help="rollouts (and updates) per seed timed")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(
        f"HalfCheetah-v5, {NUM_ENVS} envs per seed, EnvPool, {CORES} cores; "
        "CPU time per env step (us), rates in env steps/s"
    )
    print(f"MuJoCo physics alone: {physics():.1f} us of CPU per env step")
    print(
        "  K   together  collect  update  others | raw as trained (CPU)  raw 1 pool (CPU) "
        "| bound  together/bound  together/raw | ceiling vs apart  needed"
    )
    single_thread = None  # the K=1 training thread's CPU per env step
    for k in (int(s) for s in args.seeds.split(",")):
        t = training(k, args.rollouts)
        as_trained = raw(k, t["steps"] // k, pools=2 * k, threads=1)  # a quarter of training's steps
        one_pool = raw(k, t["steps"] // k)
        thread = t["collect_us"] + t["update_us"]
        bound = CORES / ((as_trained["cpu_us"] + thread) * 1e-6)
        single_thread = thread if k == 1 else single_thread
        ceiling = needed = ""
        if single_thread is not None:
            apart_cpu = one_pool["cpu_us"] + single_thread
            ceiling = f"{apart_cpu / (one_pool['cpu_us'] + thread):16.2f}x"
            needed = f"{apart_cpu / 1.3 - one_pool['cpu_us']:7.1f}"
        print(
            f"{k:3d} {t['rate']:10,.0f} {t['collect_us']:8.1f} {t['update_us']:7.1f} {t['others_us']:7.1f} "
            f"| {as_trained['rate']:10,.0f} ({as_trained['cpu_us']:4.1f})  {one_pool['rate']:9,.0f} "
            f"({one_pool['cpu_us']:4.1f}) | {bound:6,.0f} {t['rate'] / bound:10.0%} "
            f"{t['rate'] / one_pool['rate']:13.0%} | {ceiling} {needed}",
            flush=True,
        )


if __name__ == "__main__":
    main()
