"""Multi-seed returns of the MuJoCo presets, like CleanRL's benchmark pages.

Trains each preset in experiments/ with seeds 0..N-1, `--workers` runs at a time (one
per core: each run steps its envs in one thread), and writes a table of the final
deterministic evaluation (10 episodes per seed): per-seed returns, mean ± std across
seeds, wall time and env steps/s per run. Runs are plain `python run.py` commands
(logger=none); their run dirs stay under outputs/bench/returns/.

    .venv/bin/python bench/returns.py                         # 3 presets x 5 seeds x 1M steps
    .venv/bin/python bench/returns.py --presets hopper --seeds 2 -- trainer.total_steps=300000
    .venv/bin/python bench/returns.py --presets halfcheetah --seeds 3 --first-seed 10 \
        --table /tmp/try.md -- network.log_std_init=-0.5    # try a change on other seeds

Writes bench/results/returns.md (the table in docs/benchmarks.md) and prints it. A run of some of
the presets replaces their rows and keeps the others' when the table was made with the
same seeds and overrides (the runs are deterministic: a full run gives the same returns).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # abe: its statistics, and the HalfCheetah posture check

from abe.core import stats  # noqa: E402

PRESETS = ("halfcheetah", "hopper", "walker2d")
TARGETS = {"halfcheetah": 3500, "hopper": 1500, "walker2d": 1500}  # issue 6: mean of 5 seeds at 1M


def train(preset: str, seed: int, out: Path, overrides: list[str]) -> dict:
    run_dir = out / preset / f"seed_{seed}"
    command = [
        sys.executable,
        "run.py",
        f"experiment={preset}",
        f"seed={seed}",
        "logger=none",
        "trainer.progress_bar=false",
        "env.threads=1",
        f"hydra.run.dir={run_dir}",
        *overrides,
    ]
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"preset": preset, "seed": seed, "error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
    result = json.loads((run_dir / "result.json").read_text())
    wall_s = time.perf_counter() - start
    back = False
    if result["env_id"].startswith("HalfCheetah"):
        try:
            back = runs_on_its_back(run_dir / "checkpoints" / "last.pt", seed)
        except Exception as error:  # a diagnostic: never lose the benchmark's other runs to it
            print(f"{preset} seed {seed}: posture check failed: {error}", flush=True)
    print(f"{preset} seed {seed}: {result['eval/return_mean']:.1f}{' (on its back)' if back else ''}", flush=True)
    return {
        "preset": preset,
        "seed": seed,
        "return": result["eval/return_mean"],
        "env_id": result["env_id"],
        "env_steps": result["env_steps"],
        "fps": result["fps"],
        "wall_s": wall_s,
        "on_its_back": back,
    }


def runs_on_its_back(checkpoint: Path, seed: int) -> bool:
    """Whether a HalfCheetah policy runs upside down: torso pitch beyond 90 degrees for most
    of one deterministic episode. That local optimum is what splits HalfCheetah's returns
    into two groups (docs/lab-notes.md, "HalfCheetah posture split")."""
    import numpy as np

    from abe.commands.sources import load_source
    from abe.envs.vector import make_vector_env
    from abe.training.evaluation import episode_seeds

    source = load_source(str(checkpoint))
    policy = source.policy(deterministic=True)
    envs = make_vector_env(source.env_id, 1, "sync", source.env_kwargs)
    obs, _ = envs.reset(seed=episode_seeds(seed, 1))
    pitch = []
    for _ in range(999):  # the episode's 1000th step would reset it
        obs, *_ = envs.step(policy(obs))
        pitch.append(envs.envs[0].unwrapped.data.qpos[2])  # rooty: the torso's pitch in radians
    envs.close()
    return bool(np.mean(np.cos(pitch) < 0) > 0.5)  # cos: a full turn and back upright is upright


def table(runs: list[dict], seeds: list[int], workers: int, overrides: list[str]) -> str:
    lines = [
        f"| preset | env | per-seed final return (seeds {seeds[0]}-{seeds[-1]}; † on its back) | mean ± std | "
        "IQM [95% interval] | target | env steps | wall time per run | env steps/s per run |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for preset in dict.fromkeys(r["preset"] for r in runs):
        ok = [r for r in runs if r["preset"] == preset and "return" in r]
        failed = [r for r in runs if r["preset"] == preset and "error" in r]
        if not ok:
            lines.append(f"| {preset} | | failed: {failed[0]['error']} | | | | | | |")
            continue
        returns = [r["return"] for r in ok]
        per_seed = [f"{r['return']:.0f}" + "†" * r["on_its_back"] for r in ok]
        spread = statistics.stdev(returns) if len(returns) > 1 else 0.0
        lines.append(
            f"| {preset} | {ok[0]['env_id']} | {' / '.join(per_seed)}"
            f"{' (' + str(len(failed)) + ' failed)' if failed else ''} | "
            f"**{statistics.mean(returns):.0f} ± {spread:.0f}** | {iqm_with_interval(returns)} | "
            f"{TARGETS.get(preset, '')} | {ok[0]['env_steps']:,} | "
            f"{statistics.mean(r['wall_s'] for r in ok) / 60:.1f} min | {statistics.mean(r['fps'] for r in ok):,.0f} |"
        )
    first = f" --first-seed {seeds[0]}" if seeds[0] else ""
    extra = f" -- {' '.join(overrides)}" if overrides else ""
    lines.append(
        f"\n{workers} runs at a time, one env-stepping thread each; command: "
        f"`.venv/bin/python bench/returns.py --seeds {len(seeds)}{first}{extra}`"
    )
    return "\n".join(lines)


def iqm_with_interval(returns: list[float]) -> str:
    """rliable's interquartile mean and its 95% stratified bootstrap interval."""
    low, high = stats.interval(returns, stats.iqm)
    return f"{stats.iqm(returns):.0f} [{low:.0f}, {high:.0f}]"


def profile_plot(runs: list[dict], path: Path) -> Path | None:
    """A performance profile per preset (Agarwal et al. 2021): the share of runs whose final
    return is above each threshold, with rliable's 95% bootstrap band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from rliable import library

    presets = [
        p for p in dict.fromkeys(r["preset"] for r in runs) if any("return" in r for r in runs if r["preset"] == p)
    ]
    if not presets:
        return None
    fig, axes = plt.subplots(1, len(presets), figsize=(4 * len(presets), 3.2), dpi=100, squeeze=False)
    for ax, preset in zip(axes[0], presets, strict=True):
        returns = np.array([[r["return"]] for r in runs if r["preset"] == preset and "return" in r])
        taus = np.linspace(returns.min() - 1, returns.max() + 1, 60)
        saved = np.random.get_state()  # rliable resamples with numpy's global RNG
        np.random.seed(0)
        try:
            profiles, bands = library.create_performance_profile({preset: returns}, taus, reps=2000)
        finally:
            np.random.set_state(saved)
        ax.plot(taus, profiles[preset], color="tab:blue")
        ax.fill_between(taus, bands[preset][0], bands[preset][1], color="tab:blue", alpha=0.2)
        ax.set_title(f"{preset} ({len(returns)} runs)")
        ax.set_xlabel("final eval return")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("share of runs above")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def keep_other_rows(old: str, new: str) -> str:
    """`new`, plus the rows of `old` for presets `new` did not run, in PRESETS order;
    just `new` when the two tables differ in seeds or overrides (header or footnote)."""
    old_lines, new_lines = old.strip().splitlines(), new.strip().splitlines()
    if old_lines[0] != new_lines[0] or old_lines[-1] != new_lines[-1]:
        return new

    def rows(lines: list[str]) -> dict[str, str]:
        return {line.split("|")[1].strip(): line for line in lines[2:] if line.startswith("| ")}

    merged = {**rows(old_lines), **rows(new_lines)}
    order = [p for p in PRESETS if p in merged] + [p for p in merged if p not in PRESETS]
    return "\n".join([*new_lines[:2], *(merged[p] for p in order), "", new_lines[-1]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default=",".join(PRESETS))
    parser.add_argument("--seeds", type=int, default=5, help="how many seeds per preset")
    parser.add_argument(
        "--first-seed", type=int, default=0, help="seeds first..first+N-1: try changes on seeds the table does not use"
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "bench" / "returns")
    parser.add_argument("--table", type=Path, default=ROOT / "bench" / "results" / "returns.md")
    parser.add_argument("overrides", nargs="*", help="run.py overrides for every run (after --)")
    args = parser.parse_args()
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    jobs = [(p, s) for p in args.presets.split(",") for s in seeds]
    with ThreadPoolExecutor(args.workers) as pool:
        runs = list(pool.map(lambda job: train(*job, args.out, args.overrides), jobs))
    text = table(runs, seeds, args.workers, args.overrides)
    if args.table.exists():
        text = keep_other_rows(args.table.read_text(), text)
    args.table.parent.mkdir(parents=True, exist_ok=True)
    args.table.write_text(text + "\n")
    plot = profile_plot(runs, args.table.with_name(args.table.stem + "_profile.png"))
    print(text + (f"\nperformance profile: {plot}" if plot else ""))


if __name__ == "__main__":
    main()
