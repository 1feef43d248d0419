"""Training throughput side by side: raw env stepping, abe, Stable-Baselines3's A2C.

Each measurement runs in its own process (so its peak memory is its own), one after
another on this machine, all on HalfCheetah-v5 with the same number of envs:

  raw-sync     Gymnasium SyncVectorEnv, random actions: the simulator's rate here
  raw-async    Gymnasium AsyncVectorEnv (one process per env), random actions
  abe-sync     abe's training loop (env.backend=sync), evaluation inside the timing
  abe-async    the same with env.backend=async
  sb3          SB3 A2C, its defaults + VecNormalize (needs `pip install stable-baselines3`)

    .venv/bin/python bench/throughput.py [--envs 16] [--steps 100000] [--only abe-sync,sb3]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENV_ID = "HalfCheetah-v5"
MEASUREMENTS = ("raw-sync", "raw-async", "abe-sync", "abe-async", "sb3")


def raw(mode: str, envs: int, steps: int) -> float:
    import numpy as np

    from abe.envs import make_vector_env

    vec = make_vector_env(ENV_ID, envs, mode)
    vec.reset(seed=0)
    actions = np.random.default_rng(0).uniform(-1, 1, size=(64, envs, 6)).astype(np.float32)
    start = time.perf_counter()
    for i in range(steps // envs):
        vec.step(actions[i % 64])
    elapsed = time.perf_counter() - start
    vec.close()
    return (steps // envs) * envs / elapsed


def abe_training(backend: str, envs: int, steps: int) -> float:
    import tempfile

    from abe.cli import compose
    from abe.tracking import NullTracker
    from abe.training import train

    cfg = compose([f"env.backend={backend}", f"trainer.num_envs={envs}", f"trainer.total_steps={steps}",
                   "trainer.eval_every=50000", "trainer.progress_bar=false", "logger=none"])
    with tempfile.TemporaryDirectory() as tmp:
        result = train(cfg, Path(tmp), NullTracker())
    return result["fps"]


def sb3(envs: int, steps: int) -> float:
    from stable_baselines3 import A2C
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    vec = VecNormalize(make_vec_env(ENV_ID, n_envs=envs, seed=0))
    model = A2C("MlpPolicy", vec, seed=0, device="cpu")
    start = time.perf_counter()
    model.learn(total_timesteps=steps)
    return steps / (time.perf_counter() - start)


def measure_one(name: str, envs: int, steps: int) -> None:
    import abe  # noqa: F401  (sets NUMBA_DISABLE_JIT, as training does)

    runners = {
        "raw-sync": lambda: raw("sync", envs, steps), "raw-async": lambda: raw("async", envs, steps),
        "abe-sync": lambda: abe_training("sync", envs, steps),
        "abe-async": lambda: abe_training("async", envs, steps),
        "sb3": lambda: sb3(envs, steps),
    }
    fps = runners[name]()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({"name": name, "fps": fps, "peak_mb": peak_mb, "children_peak_mb": children_mb}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", type=int, default=16)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--only", default=",".join(MEASUREMENTS))
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        sys.path.insert(0, str(ROOT))
        return measure_one(args.one, args.envs, args.steps)
    results = {}
    for name in args.only.split(","):
        proc = subprocess.run(
            [sys.executable, __file__, "--one", name, "--envs", str(args.envs), "--steps", str(args.steps)],
            capture_output=True, text=True, cwd=ROOT,
        )
        if proc.returncode != 0:
            print(f"{name:10s} failed: {proc.stderr.strip().splitlines()[-1]}")
            continue
        results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
        r = results[name]
        print(f"{name:10s} {r['fps']:>9,.0f} env steps/s   peak {r['peak_mb']:,.0f} MB "
              f"(+ workers {r['children_peak_mb']:,.0f} MB)", flush=True)
    print(f"\n{ENV_ID}, {args.envs} envs, {args.steps:,} env steps each")
    fastest_raw = max((results[n]["fps"] for n in ("raw-sync", "raw-async") if n in results), default=None)
    for name in ("abe-sync", "abe-async"):
        if name not in results:
            continue
        fps = results[name]["fps"]
        line = f"  {name}: {fps:,.0f} env steps/s"
        if "sb3" in results:
            line += f" = {fps / results['sb3']['fps']:.2f}x SB3 A2C"
        if fastest_raw:
            line += f", {100 * fps / fastest_raw:.0f}% of the fastest raw stepping"
        print(line)


if __name__ == "__main__":
    main()
