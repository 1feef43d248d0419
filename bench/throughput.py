"""Training throughput side by side: raw env stepping, abe, Stable-Baselines3, Tianshou.

Each measurement runs in its own process (so its peak memory is its own), one after
another on this machine, all on HalfCheetah-v5 with the same number of envs:

  raw-sync       Gymnasium SyncVectorEnv, random actions: the simulator's rate here
  raw-async      Gymnasium AsyncVectorEnv (one process per env), random actions
  raw-envpool    abe's EnvPool backend (two pools, one thread per core), random actions
  abe-sync       abe's default training run (env.backend=sync), evaluations inside the timing
  abe-async      the same with env.backend=async
  abe-envpool    the same with env.backend=envpool
  sb3            SB3 A2C, its defaults + VecNormalize (`pip install -e .[bench]`)
  tianshou       Tianshou 2's own pipeline with its MuJoCo A2C example settings: shared-memory
                 subprocess envs, Collector, VectorReplayBuffer, A2C.update; 80 steps per update

    .venv/bin/python bench/throughput.py [--envs 16] [--steps 100000] [--only abe-sync,sb3] [--rounds 5]

Single runs of this script on the 2-core dev machine moved by 20-40% between runs (on
2026-11-26: abe-envpool 9,997 and 11,762 env steps/s, raw EnvPool 27,412 and 39,686); `--rounds`
repeats the measurements interleaved and reports medians of the per-round ratios.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENV_ID = "HalfCheetah-v5"
MEASUREMENTS = ("raw-sync", "raw-async", "raw-envpool", "abe-sync", "abe-async", "abe-envpool", "sb3", "tianshou")
RAW = ("raw-sync", "raw-async", "raw-envpool")


def raw(backend: str, envs: int, steps: int) -> float:
    import numpy as np

    from abe.envs.vector import make_vector_env

    vec = make_vector_env(ENV_ID, envs, backend)
    vec.reset(seed=list(range(envs)))
    actions = np.random.default_rng(0).uniform(-1, 1, size=(64, envs, 6)).astype(np.float32)
    start = time.perf_counter()
    for i in range(steps // envs):
        vec.step(actions[i % 64])
    elapsed = time.perf_counter() - start
    vec.close()
    return (steps // envs) * envs / elapsed


def abe_training(backend: str, envs: int, steps: int) -> float:
    import tempfile

    from abe.commands.hydra_edge import compose, to_config
    from abe.training.loop import train

    cfg = to_config(
        compose(
            [
                f"env.backend={backend}",
                f"trainer.num_envs={envs}",
                f"trainer.total_steps={steps}",
                "trainer.eval_every=50000",
                "trainer.progress_bar=false",
                "logger=none",
            ]
        )
    )
    with tempfile.TemporaryDirectory() as tmp:
        result = train(cfg, Path(tmp))
    return result.fps


def sb3(envs: int, steps: int) -> float:
    from stable_baselines3 import A2C
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    vec = VecNormalize(make_vec_env(ENV_ID, n_envs=envs, seed=0))
    model = A2C("MlpPolicy", vec, seed=0, device="cpu")
    start = time.perf_counter()
    model.learn(total_timesteps=steps)
    return steps / (time.perf_counter() - start)


def tianshou(envs: int, steps: int) -> float:
    """Tianshou's examples/mujoco/mujoco_a2c.py settings (64x64 tanh, RMSprop 7e-4,
    GAE 0.95, return scaling, 16 envs x 5 steps per update, observation normalisation)
    on its own Collector and buffer; abe's agent builder makes the same networks."""
    import gymnasium as gym
    from tianshou.data import Collector, VectorReplayBuffer
    from tianshou.env import ShmemVectorEnv, VectorEnvNormObs
    from tianshou.utils.torch_utils import policy_within_training_step

    from abe.agent.agent import build_agent
    from abe.commands.hydra_edge import compose, to_config

    cfg = to_config(compose(["algo.n_steps=5", "algo.normalize_obs=false", "logger=none"]))
    train_envs = VectorEnvNormObs(ShmemVectorEnv([lambda: gym.make(ENV_ID) for _ in range(envs)]))
    train_envs.seed(0)
    agent = build_agent(cfg, train_envs.observation_space[0], train_envs.action_space[0])
    step_per_collect = 5 * envs
    collector = Collector(agent.algorithm, train_envs, VectorReplayBuffer(step_per_collect, envs))
    collector.reset()
    start, done = time.perf_counter(), 0
    while done < steps:
        with policy_within_training_step(agent.policy):
            collector.collect(n_step=step_per_collect)
            agent.algorithm.update(buffer=collector.buffer, batch_size=None, repeat=1)
        collector.buffer.reset(keep_statistics=True)
        done += step_per_collect
    fps = done / (time.perf_counter() - start)
    train_envs.close()
    return fps


def measure_one(name: str, envs: int, steps: int) -> None:
    import abe  # noqa: F401  (sets NUMBA_DISABLE_JIT, as training does)

    runners = {
        **{f"raw-{b}": (lambda b=b: raw(b, envs, steps)) for b in ("sync", "async", "envpool")},
        **{f"abe-{b}": (lambda b=b: abe_training(b, envs, steps)) for b in ("sync", "async", "envpool")},
        "sb3": lambda: sb3(envs, steps),
        "tianshou": lambda: tianshou(envs, steps),
    }
    fps = runners[name]()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({"name": name, "fps": fps, "peak_mb": peak_mb, "children_peak_mb": children_mb}))


def run_one(name: str, args) -> dict | None:
    """One measurement in its own process; prints its line."""
    proc = subprocess.run(
        [sys.executable, __file__, "--one", name, "--envs", str(args.envs), "--steps", str(args.steps)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if proc.returncode != 0:
        print(f"{name:10s} failed: {proc.stderr.strip().splitlines()[-1]}")
        return None
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(
        f"{name:10s} {result['fps']:>9,.0f} env steps/s   peak {result['peak_mb']:,.0f} MB "
        f"(+ workers {result['children_peak_mb']:,.0f} MB)",
        flush=True,
    )
    return result


def ratios(results: dict, name: str) -> dict[str, float]:
    """abe's rate against each peer, and its share of the fastest raw stepping, in one round."""
    fps = results[name]["fps"]
    out = {
        label: fps / results[peer]["fps"]
        for peer, label in (("sb3", "SB3 A2C"), ("tianshou", "Tianshou A2C"))
        if peer in results
    }
    fastest_raw = max((results[n]["fps"] for n in RAW if n in results), default=None)
    if fastest_raw:
        out["raw"] = fps / fastest_raw
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", type=int, default=16)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--only", default=",".join(MEASUREMENTS))
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run the measurements this many times, interleaved; report medians of the per-round ratios",
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        return measure_one(args.one, args.envs, args.steps)
    rounds = []
    for index in range(args.rounds):
        if args.rounds > 1:
            print(f"round {index + 1} of {args.rounds}")
        rounds.append({name: r for name in args.only.split(",") if (r := run_one(name, args)) is not None})
    print(
        f"\n{ENV_ID}, {args.envs} envs, {args.steps:,} env steps each"
        + (f"; medians of {args.rounds} interleaved rounds (min to max)" if args.rounds > 1 else "")
    )
    for name in ("abe-sync", "abe-async", "abe-envpool"):
        measured = [r for r in rounds if name in r]
        if not measured:
            continue
        line = f"  {name}: {statistics.median(r[name]['fps'] for r in measured):,.0f} env steps/s"
        per_round = [ratios(r, name) for r in measured]
        for label in per_round[0]:
            line += describe_ratio(label, [r[label] for r in per_round if label in r])
        print(line)


def describe_ratio(label: str, values: list[float]) -> str:
    """' = 1.48x SB3 A2C (1.35 to 1.81);' or ' 34% of the fastest raw stepping (30 to 37%)'."""
    if label == "raw":
        middle, low, high = (100 * v for v in (statistics.median(values), min(values), max(values)))
        spread = f" ({low:.0f} to {high:.0f}%)" if len(values) > 1 else ""
        return f" {middle:.0f}% of the fastest raw stepping{spread}"
    spread = f" ({min(values):.2f} to {max(values):.2f})" if len(values) > 1 else ""
    return f" = {statistics.median(values):.2f}x {label}{spread};"


if __name__ == "__main__":
    main()
