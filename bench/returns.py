"""Multi-seed returns of every env option, beside the best published A2C numbers.

Trains `python run.py env=X` for each option in conf/env/ (its own settings and budget, nothing
else) on N seeds, `--workers` runs at a time (one per core: each run steps its envs in one
thread), and writes a table of the final deterministic evaluation (10 episodes per seed):
per-seed returns, mean ± std and IQM with its 95% bootstrap interval across seeds, the
published A2C result, wall time and env steps/s per run. The default seeds, 1000-1004, are
held out: no sweep that chose an option's settings trained on them. Runs are plain `run.py`
commands (logger=none); their run dirs stay under outputs/bench/returns/.

    .venv/bin/python bench/returns.py                          # every option x 5 held-out seeds
    .venv/bin/python bench/returns.py --envs pendulum,reacher --seeds 2
    .venv/bin/python bench/returns.py --envs hopper --seeds 3 --first-seed 10 \
        --table /tmp/try.md -- network.log_std_init=-0.5    # try a change on other seeds

Writes bench/results/returns.md (the README's table) and a performance profile beside it,
and prints the table. A run of some of the options replaces their rows and keeps the others'
when the table was made with the same seeds and overrides; a finished run whose command and
option settings (its YAML, comments aside) are unchanged is not trained again (the runs are
deterministic; `--fresh` does).
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

import yaml
from harness import ROOT

from abe.core import stats

# The best published A2C result per option (the issue that set the targets: 18), and where it is from.
ZOO = "rl-baselines3-zoo benchmark.md"
TIANSHOU = "Tianshou examples/mujoco/README.md, A2C, 1M steps"
PUBLISHED: dict[str, tuple[float, str]] = {
    "pendulum": (-163.0, ZOO),
    "mountaincar": (91.2, ZOO),
    "inverted_pendulum": (1000.0, TIANSHOU),
    "inverted_double_pendulum": (9257.7, TIANSHOU),
    "reacher": (-6.7, TIANSHOU),
    "swimmer": (200.6, ZOO),
    "halfcheetah": (3041.0, ZOO),
    "hopper": (1253.2, TIANSHOU),
    "walker2d": (1091.6, TIANSHOU),
    "ant": (3485.4, TIANSHOU),
}
OPTIONS = tuple(PUBLISHED)  # cheap ones first
DEFAULT_FIRST_SEED = 1000  # held out: the screens and sweeps that chose the options' settings used seeds below 1000


def run_command(option: str, seed: int, out: Path, overrides: list[str]) -> list[str]:
    return [
        "run.py",
        f"env={option}",
        f"seed={seed}",
        "logger=none",
        "trainer.progress_bar=false",
        "env.threads=1",
        f"hydra.run.dir={out / option / f'seed_{seed}'}",
        *overrides,
    ]


def saved_record(run_dir: Path) -> dict | None:
    """What an earlier call saved for this run dir: its key (command, option settings) and row."""
    saved = run_dir / "bench_row.json"
    return json.loads(saved.read_text()) if saved.exists() else None


def saved_row(option: str, seed: int, out: Path, overrides: list[str]) -> dict | None:
    """The row an earlier call saved for this command, whatever the option's settings were then."""
    record = saved_record(out / option / f"seed_{seed}")
    return record["row"] if record and record["key"]["command"] == run_command(option, seed, out, overrides) else None


def train(option: str, seed: int, out: Path, overrides: list[str], fresh: bool = False) -> dict:
    """One run's row; a row saved by an earlier call with the same command and the same
    option settings is reused (runs are deterministic), so a stopped table continues."""
    run_dir = out / option / f"seed_{seed}"
    command = run_command(option, seed, out, overrides)
    key = {"command": command, "option": yaml.safe_load((ROOT / "conf" / "env" / f"{option}.yaml").read_text())}
    record = None if fresh else saved_record(run_dir)
    if record and record["key"] == key:
        print(f"{option} seed {seed}: {record['row']['return']:.1f} (saved)", flush=True)
        return {**record["row"], "curve": learning_curve(json.loads((run_dir / "result.json").read_text()))}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, *command], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"option": option, "seed": seed, "error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
    result = json.loads((run_dir / "result.json").read_text())
    wall_s = time.perf_counter() - start
    back = False
    if result["env_id"].startswith("HalfCheetah"):
        try:
            back = runs_on_its_back(run_dir / "checkpoints" / "last.pt", seed)
        except Exception as error:  # a diagnostic: never lose the benchmark's other runs to it
            print(f"{option} seed {seed}: posture check failed: {error}", flush=True)
    print(f"{option} seed {seed}: {result['eval/return_mean']:.1f}{' (on its back)' if back else ''}", flush=True)
    row = {
        "option": option,
        "seed": seed,
        "return": result["eval/return_mean"],
        "env_id": result["env_id"],
        "env_steps": result["env_steps"],
        "fps": result["fps"],
        "wall_s": wall_s,
        "on_its_back": back,
    }
    (run_dir / "bench_row.json").write_text(json.dumps({"key": key, "row": row}))
    return {**row, "curve": learning_curve(result)}


def learning_curve(result: dict) -> dict[int, float]:
    """A run's evaluations (its result.json): env steps -> eval return."""
    return {e["env_steps"]: e["eval/return_mean"] for e in result["evaluations"]}


def best_mean_during_training(ok: list[dict]) -> str:
    """Tianshou's measure: the best mean over the seeds at any evaluation, and where."""
    steps = sorted(set.intersection(*(set(r["curve"]) for r in ok)))
    best = max(steps, key=lambda step: statistics.mean(r["curve"][step] for r in ok))
    returns = [r["curve"][best] for r in ok]
    return f"{statistics.mean(returns):.{digits(returns)}f} at {best:,}"


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


def table(runs: list[dict], seeds: list[int], overrides: list[str]) -> str:
    lines = [
        f"| env option | env | budget (env steps) | per-seed final return (seeds {seeds[0]}-{seeds[-1]}; "
        "† on its back) | mean ± std | IQM [95% interval] | best mean during training (at env steps) | published A2C | "
        "wall time per run | env steps/s per run |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for option in dict.fromkeys(r["option"] for r in runs):
        ok = [r for r in runs if r["option"] == option and "return" in r]
        failed = [r for r in runs if r["option"] == option and "error" in r]
        if not ok:
            lines.append(f"| {option} | | | failed: {failed[0]['error']} | | | | | | |")
            continue
        returns = [r["return"] for r in ok]
        per_seed = [f"{r['return']:.{digits(returns)}f}" + "†" * r["on_its_back"] for r in ok]
        spread = statistics.stdev(returns) if len(returns) > 1 else 0.0
        published = f"{PUBLISHED[option][0]:g}" if option in PUBLISHED else ""
        lines.append(
            f"| {option} | {ok[0]['env_id']} | {ok[0]['env_steps']:,} | {' / '.join(per_seed)}"
            f"{' (' + str(len(failed)) + ' failed)' if failed else ''} | "
            f"**{statistics.mean(returns):.{digits(returns)}f} ± {spread:.{digits(returns)}f}** | "
            f"{iqm_with_interval(returns)} | {best_mean_during_training(ok)} | {published} | "
            f"{statistics.mean(r['wall_s'] for r in ok) / 60:.1f} min | {statistics.mean(r['fps'] for r in ok):,.0f} |"
        )
    first = f" --first-seed {seeds[0]}" if seeds[0] != DEFAULT_FIRST_SEED else ""
    extra = f" -- {' '.join(overrides)}" if overrides else ""
    lines.append(
        "\nRuns trained side by side (`--workers`, 2 by default), one env-stepping thread each: wall times "
        "grow with what else runs; best mean during training: the highest mean over the seeds at any "
        "evaluation (Tianshou's published numbers are that, over 10 seeds); "
        f"published: {ZOO} (pendulum, mountaincar, "
        f"swimmer, halfcheetah), {TIANSHOU} (the others); command: "
        f"`.venv/bin/python bench/returns.py --seeds {len(seeds)}{first}{extra}`"
    )
    return "\n".join(lines)


def digits(returns: list[float]) -> int:
    """One decimal where returns are small (Reacher's -6.7), none where they are large."""
    return 1 if max(abs(r) for r in returns) < 100 else 0


def iqm_with_interval(returns: list[float]) -> str:
    """rliable's interquartile mean and its 95% stratified bootstrap interval."""
    low, high = stats.interval(returns, stats.iqm)
    d = digits(returns)
    return f"{stats.iqm(returns):.{d}f} [{low:.{d}f}, {high:.{d}f}]"


def profile_plot(runs: list[dict], path: Path) -> Path | None:
    """A performance profile per env option (Agarwal et al. 2021): the share of runs whose final
    return is above each threshold, with rliable's 95% bootstrap band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from rliable import library

    options = [
        o for o in dict.fromkeys(r["option"] for r in runs) if any("return" in r for r in runs if r["option"] == o)
    ]
    if not options:
        return None
    columns = min(5, len(options))
    rows = -(-len(options) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 3.0 * rows), dpi=100, squeeze=False)
    for ax in axes.flat[len(options) :]:
        ax.set_visible(False)
    for ax, option in zip(axes.flat, options, strict=False):
        returns = np.array([[r["return"]] for r in runs if r["option"] == option and "return" in r])
        taus = np.linspace(returns.min() - 1, returns.max() + 1, 60)
        saved = np.random.get_state()  # rliable resamples with numpy's global RNG
        np.random.seed(0)
        try:
            profiles, bands = library.create_performance_profile({option: returns}, taus, reps=2000)
        finally:
            np.random.set_state(saved)
        ax.plot(taus, profiles[option], color="tab:blue")
        ax.fill_between(taus, bands[option][0], bands[option][1], color="tab:blue", alpha=0.2)
        if option in PUBLISHED:
            ax.axvline(PUBLISHED[option][0], color="tab:red", linestyle="--", label="published A2C")
            ax.legend(loc="lower left", fontsize=7)
        ax.set_title(f"{option} ({len(returns)} runs)")
        ax.set_xlabel("final eval return")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    for row in axes:
        row[0].set_ylabel("share of runs above")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def keep_other_rows(old: str, new: str) -> str:
    """`new`, plus the rows of `old` for options `new` did not run, in OPTIONS order;
    just `new` when the two tables differ in seeds or overrides (header or footnote)."""
    old_lines, new_lines = old.strip().splitlines(), new.strip().splitlines()
    if old_lines[0] != new_lines[0] or old_lines[-1] != new_lines[-1]:
        return new

    def rows(lines: list[str]) -> dict[str, str]:
        return {line.split("|")[1].strip(): line for line in lines[2:] if line.startswith("| ")}

    merged = {**rows(old_lines), **rows(new_lines)}
    order = [o for o in OPTIONS if o in merged] + [o for o in merged if o not in OPTIONS]
    return "\n".join([*new_lines[:2], *(merged[o] for o in order), "", new_lines[-1]])


def kept_rows(text: str, runs: list[dict], seeds: list[int], args: argparse.Namespace) -> list[dict]:
    """The runs behind the table's rows that this call did not train, so that the profile
    shows every option of the table: the saved runs, or where they are not on this machine,
    the table's per-seed returns (as rounded there)."""
    ran = {r["option"] for r in runs}
    kept = []
    for line in text.splitlines()[2:]:
        cells = [c.strip() for c in line.split("|")[1:-1]]
        if not line.startswith("| ") or cells[0] in ran:
            continue
        saved = [saved_row(cells[0], s, args.out, args.overrides) for s in seeds]
        if all(saved):
            kept += saved
        else:
            kept += [{"option": cells[0], "return": float(v.strip().rstrip("†"))} for v in cells[3].split(" / ")]
    return kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", default=",".join(OPTIONS), help="env options, comma-separated")
    parser.add_argument("--seeds", type=int, default=5, help="how many seeds per option")
    parser.add_argument(
        "--first-seed",
        type=int,
        default=DEFAULT_FIRST_SEED,
        help="seeds first..first+N-1 (default: held out from tuning; try changes on other seeds)",
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--fresh", action="store_true", help="train every run again, even where a saved row matches")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "bench" / "returns")
    parser.add_argument("--table", type=Path, default=ROOT / "bench" / "results" / "returns.md")
    parser.add_argument("overrides", nargs="*", help="run.py overrides for every run (after --)")
    args = parser.parse_args()
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    jobs = [(o, s) for o in args.envs.split(",") for s in seeds]
    with ThreadPoolExecutor(args.workers) as pool:
        runs = list(pool.map(lambda job: train(*job, args.out, args.overrides, args.fresh), jobs))
    text = table(runs, seeds, args.overrides)
    if args.table.exists():
        text = keep_other_rows(args.table.read_text(), text)
    args.table.parent.mkdir(parents=True, exist_ok=True)
    args.table.write_text(text + "\n")
    order = {o: i for i, o in enumerate(OPTIONS)}
    every_row = sorted(runs + kept_rows(text, runs, seeds, args), key=lambda r: order.get(r["option"], len(order)))
    plot = profile_plot(every_row, args.table.with_name(args.table.stem + "_profile.png"))
    print(text + (f"\nperformance profile: {plot}" if plot else ""))


if __name__ == "__main__":
    main()
