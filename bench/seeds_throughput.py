"""K seeds in one process against K single-seed processes, and against raw EnvPool.

For each K, in interleaved rounds on the same machine:

- together: `python run.py experiment=halfcheetah n_seeds=K` (one process, K agents);
- apart: the same K seeds as single-seed `run.py` processes, two at a time;
- raw: EnvPool stepping the same K x num_envs envs with random actions, no learning,
  on the same threads (the physical limit of env stepping here).

Rates are env steps of all seeds per second of wall time of the whole command (process
start, imports and evaluations included), medians over rounds; ratios are taken within
each round. Also prints the training loop's own rate (result.json's fps x K) and the
peak memory of the together process.

    .venv/bin/python bench/seeds_throughput.py --seeds 1,2,4,8 --steps 200000 --rounds 2
    .venv/bin/python bench/seeds_throughput.py --seeds 8 --pbt   # a PBT population of 8 against 8 runs
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRESET = ["experiment=halfcheetah", "logger=none", "trainer.progress_bar=false"]
NUM_ENVS = 32  # experiments/halfcheetah.yaml


def run(args: list[str], out: Path) -> tuple[float, float]:
    """Wall time of one `run.py` command, and the peak memory (MiB) of that process alone."""
    out.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(out.with_suffix(".stderr"), "w") as errors:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "run.py"), *PRESET, *args, f"hydra.run.dir={out}"],
            stdout=subprocess.DEVNULL,
            stderr=errors,
            cwd=ROOT,
        )
        _, status, usage = os.wait4(process.pid, 0)  # this child's own rusage, not every child's so far
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"run.py {' '.join(args)} failed:\n{out.with_suffix('.stderr').read_text()[-3000:]}")
    return time.perf_counter() - start, usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def population(steps: int) -> list[str]:
    """A PBT section for the together job: ten exploit-and-explore rounds over the budget."""
    space = "{lr: {low: 1e-5, high: 3e-3, log: true}, gamma: {choices: [0.95, 0.99, 0.995]}}"
    return [f"pbt={{interval: {steps // 10}, quantile: 0.25, resample: 0.25, perturb: [0.8, 1.25], space: {space}}}"]


def together(seeds: int, steps: int, tmp: Path, pbt: bool = False) -> dict:
    out = tmp / f"together-{seeds}"
    budget = [f"n_seeds={seeds}", f"trainer.total_steps={steps}", f"trainer.eval_every={steps}"]
    wall, peak = run([*budget, *(population(steps) if pbt else [])], out)
    results = [json.loads(p.read_text()) for p in sorted(out.rglob("result.json")) if "fps" in p.read_text()]
    loop_rate = sum(r["fps"] for r in results)
    return {"rate": seeds * steps / wall, "loop_rate": loop_rate, "peak_mib": peak}


def apart(seeds: int, steps: int, tmp: Path) -> dict:
    start = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:  # two processes at a time, as on 2 cores
        list(
            pool.map(
                lambda s: run(
                    [f"seed={s}", f"trainer.total_steps={steps}", f"trainer.eval_every={steps}"],
                    tmp / f"apart-{seeds}-{s}",
                ),
                range(seeds),
            )
        )
    return {"rate": seeds * steps / (time.perf_counter() - start)}


def raw(seeds: int, steps: int, pools: int = 1, threads: int = os.cpu_count() or 1) -> dict:
    """EnvPool stepping seeds x NUM_ENVS HalfCheetah envs with random actions, split into
    `pools` pools of `threads` threads that step at once: the rate and the process's CPU
    time per env step (us). A quarter of the seeds' budget is plenty for a rate."""
    import envpool
    import numpy as np

    envs = seeds * NUM_ENVS
    size = envs // pools
    made = [
        envpool.make("HalfCheetah-v5", env_type="gymnasium", num_envs=size, num_threads=threads, seed=i * size)
        for i in range(pools)
    ]
    for pool in made:
        pool.reset()
    actions = np.random.default_rng(0).uniform(-1, 1, (size, 6)).astype(np.float32)
    ids = np.arange(size, dtype=np.int32)
    rounds = max(steps * seeds // 4, 20 * envs) // envs
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(rounds):
        for pool in made:  # all pools step at once, as the training loop's groups do
            pool.send(actions, ids)
        for pool in made:
            pool.recv()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    for pool in made:
        pool.close()
    return {"rate": rounds * envs / wall, "cpu_us": cpu / (rounds * envs) * 1e6}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1,2,4,8")
    parser.add_argument("--steps", type=int, default=200_000, help="env steps per seed")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--pbt", action="store_true", help="together: a PBT population (K >= 2), not K plain seeds")
    args = parser.parse_args()
    counts = [int(k) for k in args.seeds.split(",")]
    rounds: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="abe-seeds-") as tmp:
        for r in range(args.rounds):
            for k in counts:
                row = {
                    "together": together(k, args.steps, Path(tmp) / f"r{r}", args.pbt),
                    "apart": apart(k, args.steps, Path(tmp) / f"r{r}"),
                    "raw": raw(k, args.steps),
                }
                rounds.append({"round": r, "seeds": k, **row})
                print(
                    f"round {r} K={k}: together {row['together']['rate']:,.0f}, apart {row['apart']['rate']:,.0f}, "
                    f"raw {row['raw']['rate']:,.0f} env steps/s",
                    flush=True,
                )
    print(
        f"\nHalfCheetah-v5 (experiment=halfcheetah, {NUM_ENVS} envs per seed"
        f"{', together as a PBT population' if args.pbt else ''}), {args.steps:,} env steps per seed, "
        f"{args.rounds} round(s), medians; {os.cpu_count()} CPUs"
    )
    print(
        f"{'K':>3} {'together':>10} {'apart':>10} {'raw':>10} {'together/apart':>15} {'together/raw':>13} "
        f"{'loop only':>10} {'peak MiB':>9}"
    )
    for k in counts:
        mine = [row for row in rounds if row["seeds"] == k]

        def median(key, field="rate", rows=mine):
            return statistics.median(row[key][field] for row in rows)

        vs_apart = statistics.median(row["together"]["rate"] / row["apart"]["rate"] for row in mine)
        vs_raw = statistics.median(row["together"]["rate"] / row["raw"]["rate"] for row in mine)
        print(
            f"{k:>3} {median('together'):>10,.0f} {median('apart'):>10,.0f} {median('raw'):>10,.0f} "
            f"{vs_apart:>14.2f}x {100 * vs_raw:>12.0f}% {median('together', 'loop_rate'):>10,.0f} "
            f"{median('together', 'peak_mib'):>9,.0f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
