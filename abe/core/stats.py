"""Statistics over seeds: what a K-seed job reports as its objective, and the intervals
of held-out confirmations. Point estimates and bootstrap intervals come from rliable
(Agarwal et al. 2021, "Deep RL at the edge of the statistical precipice").

- mean: the plain average; a lucky seed moves it most.
- iqm: the interquartile mean (the middle half of the runs, scipy's trim_mean(0.25)):
  robust to one seed that flips or never learns.
- lcb: the lower end of the 95% bootstrap interval of the mean: ranks a setting by what
  it gets on its worse seeds, and guards the winner's curse of picking the highest of
  many noisy estimates.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np

STATISTICS = ("mean", "iqm", "lcb")
# rliable's default is 50,000; for a job's handful of seeds 2,000 resamples give the same
# interval to a small fraction of its width, at a fraction of the time per call.
BOOTSTRAP_REPS = 2000
CONFIDENCE = 0.95


def _scores(values: Sequence[float]) -> np.ndarray:
    """rliable's layout: (runs, tasks); abe's jobs are one task."""
    return np.asarray(values, dtype=np.float64).reshape(-1, 1)


def iqm(values: Sequence[float]) -> float:
    from rliable import metrics

    return float(metrics.aggregate_iqm(_scores(values)))


def mean(values: Sequence[float]) -> float:
    return float(np.mean(values))


def interval(
    values: Sequence[float], statistic: Callable[[Sequence[float]], float] = mean, seed: int = 0
) -> tuple[float, float]:
    """The 95% stratified bootstrap (percentile) interval of `statistic` over the runs,
    as rliable computes it; seeded, so the same values give the same interval.

    rliable 1.2.0's StratifiedBootstrap draws its resamples from numpy's global RNG
    (`np.random.choice` in `update_indices`) and ignores its `random_state`: abe seeds
    the global RNG for the call and puts its state back afterwards (training draws from
    it too). tests/unit/test_stats.py checks both."""
    if len(values) < 2:  # before the import: rliable (and the arch it imports) takes a second
        value = statistic(values)
        return value, value
    from rliable import library

    logging.getLogger("absl").setLevel(logging.WARNING)  # rliable logs every call at INFO
    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        _, intervals = library.get_interval_estimates(
            {"runs": _scores(values)},
            lambda scores: np.array([statistic(scores[:, 0])]),
            reps=BOOTSTRAP_REPS,
            confidence_interval_size=CONFIDENCE,
        )
    finally:
        np.random.set_state(saved)
    low, high = intervals["runs"][:, 0]
    return float(low), float(high)


def lcb(values: Sequence[float]) -> float:
    return interval(values, mean)[0]


def summarise(values: Sequence[float], statistic: str) -> float:
    """The job's objective: `statistic` (one of STATISTICS) over its seeds' final returns."""
    return {"mean": mean, "iqm": iqm, "lcb": lcb}[statistic](values)
