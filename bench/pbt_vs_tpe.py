"""PBT against the recommended Optuna protocol at the same env-step budget, both scored on
the same held-out seeds (issue: population-based training).

PBT: `hparams_search=pbt`, a population of P members of T env steps each (P x T steps),
then its best member's schedule re-trained from scratch on the held-out seeds.
TPE: `hparams_search=lr_gamma`, single-seed trials with median pruning, stopped by
`hydra.sweeper.max_env_steps=P x T`, then its best trial re-trained on the same
held-out seeds (`confirm_top=1`: each method picks one configuration with its search
budget; scoring three picks would also choose among them on the held-out seeds).
Both searches draw lr and gamma from the same space. The two run side by side, one
process each (the TPE sweep in one slot), so each has about one core.

    python bench/pbt_vs_tpe.py                       # HalfCheetah-v5, 8 x 1M steps (about 2 h on 2 cores)
    python bench/pbt_vs_tpe.py --env pendulum --steps 20000 --population 4 --held-out 2   # a check in minutes

Writes bench/results/pbt_vs_tpe.md (or --out) and keeps both sweeps under --work.
"""

from __future__ import annotations

import argparse
import subprocess
import time
from pathlib import Path

from harness import RESULTS, ROOT, RUN_PY, markdown_table

from abe.core import stats
from abe.core.result import read_results


def commands(args: argparse.Namespace, work: Path) -> dict[str, list[str]]:
    common = [
        f"env={args.env}",
        f"trainer.total_steps={args.steps}",
        "trainer.progress_bar=false",
        "logger=none",
        "seed=0",
    ]
    if args.eval_every:
        common.append(f"trainer.eval_every={args.eval_every}")
    pbt = [
        *RUN_PY, "-m", "hparams_search=pbt", *common,
        f"hydra.sweeper.population={args.population}",
        f"hydra.sweeper.confirm_seeds={args.held_out}",
        f"hydra.sweep.dir={work / 'pbt'}",
    ]  # fmt: skip
    if args.interval:
        pbt.append(f"hydra.sweeper.interval={args.interval}")
    tpe = [
        *RUN_PY, "-m", "hparams_search=lr_gamma", *common,
        f"hydra.sweeper.max_env_steps={args.population * args.steps}",
        "hydra.sweeper.n_trials=200",  # the budget ends the search
        "hydra.sweeper.confirm_top=1",
        f"hydra.sweeper.confirm_seeds={args.held_out}",
        f"hydra.sweeper.storage=sqlite:///{work / 'tpe.db'}",
        "hydra.sweeper.study_name=bench",
        f"hydra.sweep.dir={work / 'tpe'}",
    ]  # fmt: skip
    return {"pbt": pbt, "tpe": tpe}


def run_side_by_side(commands: dict[str, list[str]], work: Path) -> dict[str, float]:
    start, procs, seconds = time.perf_counter(), {}, {}
    for name, command in commands.items():
        log = (work / f"{name}.log").open("w")
        procs[name] = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    for name, proc in procs.items():
        if proc.wait() != 0:
            raise RuntimeError(f"{name} exited {proc.returncode}: see {work / (name + '.log')}")
        seconds[name] = time.perf_counter() - start
    return seconds


def row(name: str, results: dict, seconds: float) -> list[object]:
    pick = results["confirmation"][0]
    returns = pick["returns"]
    low, high = stats.interval(returns)
    if name == "pbt":
        best = results["best_member"]
        what = f"member seed {best['seed']}: {len(best['schedule']) - 1} changes of lr/gamma"
    else:
        what = ", ".join(f"{k}={v:.4g}" for k, v in pick["params"].items())
    return [
        name.upper(),
        f"{results['env_steps']:,}",
        what,
        " / ".join(f"{r:.0f}" for r in returns),
        f"{stats.mean(returns):.1f}",
        f"{stats.iqm(returns):.1f}",
        f"[{low:.1f}, {high:.1f}]",
        f"{seconds / 60:.0f} min",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="halfcheetah")
    parser.add_argument("--steps", type=int, default=1_000_000, help="env steps per member / per trial")
    parser.add_argument("--population", type=int, default=8)
    parser.add_argument("--interval", type=int, default=0, help="PBT's (0: the sweeper's default)")
    parser.add_argument("--eval-every", type=int, default=0, help="0: the env option's")
    parser.add_argument("--held-out", type=int, default=5)
    parser.add_argument("--work", type=Path, default=ROOT / "outputs" / "bench" / "pbt_vs_tpe")
    parser.add_argument("--out", type=Path, default=RESULTS / "pbt_vs_tpe.md")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    seconds = run_side_by_side(commands(args, args.work.resolve()), args.work)
    results = {name: read_results(args.work / name) for name in seconds}
    header = [
        "method",
        "search env steps",
        "its pick",
        f"held-out returns (seeds 1000-{999 + args.held_out})",
        "mean",
        "IQM",
        "95% interval",
        "wall (side by side)",
    ]
    table = markdown_table(header, [row(name, results[name], seconds[name]) for name in ("pbt", "tpe")])
    budget = f"{args.population} x {args.steps:,}"
    text = f"{args.env}, search budget {budget} env steps each, `python bench/pbt_vs_tpe.py`\n\n{table}"
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
