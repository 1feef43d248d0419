"""Which statistic over seeds should a K-seed sweep maximise? A replay on recorded runs.

Reads a table of final returns, one row per setting and one column per seed (by default
16 HalfCheetah settings x 5 seeds, bench/data/). For every way of splitting the seeds
into K tuning seeds and the rest held out, each statistic (abe.core.stats) picks the
setting with the best value on the tuning seeds, as a sweep would; the script reports,
averaged over the splits:

- held-out: the pick's mean return on the held-out seeds (higher is better);
- regret: the best held-out mean of any setting minus the pick's;
- optimism: the pick's own estimate (the statistic on its tuning seeds) against its
  held-out mean, in percent (the winner's curse: a single-seed sweep's best, 3425,
  averaged 1817 on five seeds).

    .venv/bin/python bench/objective_choice.py --tuning-seeds 3
    .venv/bin/python bench/objective_choice.py --tuning-seeds 4
"""

from __future__ import annotations

import argparse
import csv
import itertools
import statistics
import sys
from pathlib import Path

from harness import ROOT

from abe.core import stats

DEFAULT_TABLE = ROOT / "bench" / "data" / "halfcheetah_settings_seeds_20-24.csv"


def read_table(path: Path) -> dict[str, list[float]]:
    lines = [line for line in path.read_text().splitlines() if not line.startswith("#")]
    rows = list(csv.reader(lines))
    return {row[0]: [float(v) for v in row[1:]] for row in rows[1:]}


def replay(table: dict[str, list[float]], tuning_seeds: int) -> dict[str, dict[str, float]]:
    seeds = len(next(iter(table.values())))
    splits = list(itertools.combinations(range(seeds), tuning_seeds))
    found: dict[str, dict[str, list[float]]] = {
        s: {"held_out": [], "regret": [], "optimism": []} for s in stats.STATISTICS
    }
    for tuning in splits:
        held = [i for i in range(seeds) if i not in tuning]
        held_mean = {name: statistics.mean(values[i] for i in held) for name, values in table.items()}
        best_held = max(held_mean.values())
        for statistic in stats.STATISTICS:
            estimate = {name: stats.summarise([values[i] for i in tuning], statistic) for name, values in table.items()}
            pick = max(estimate, key=estimate.get)
            found[statistic]["held_out"].append(held_mean[pick])
            found[statistic]["regret"].append(best_held - held_mean[pick])
            found[statistic]["optimism"].append(100 * (estimate[pick] / held_mean[pick] - 1))
    return {s: {k: statistics.mean(v) for k, v in found[s].items()} | {"splits": len(splits)} for s in found}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", type=Path, default=DEFAULT_TABLE)
    parser.add_argument("--tuning-seeds", type=int, default=3)
    args = parser.parse_args()
    table = read_table(args.table)
    results = replay(table, args.tuning_seeds)
    seeds = len(next(iter(table.values())))
    print(
        f"{len(table)} settings x {seeds} seeds from {args.table.name}; {args.tuning_seeds} tuning seeds, "
        f"{seeds - args.tuning_seeds} held out, {results['mean']['splits']} splits"
    )
    print(f"{'statistic':<10} {'held-out mean of the pick':>26} {'regret':>8} {'optimism':>9}")
    for statistic, row in results.items():
        print(f"{statistic:<10} {row['held_out']:>26.0f} {row['regret']:>8.0f} {row['optimism']:>+8.0f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
