"""Statistics over seeds: the objective's options and rliable's bootstrap intervals."""

import numpy as np
import pytest

from abe.core import stats


def test_iqm_is_the_mean_of_the_middle_half():
    assert stats.iqm([1400, 1500, 3000, 4500, 4600]) == pytest.approx(3000.0)  # trims one run at each end
    assert stats.iqm([0.0, 1.0, 2.0, 100.0]) == pytest.approx(1.5)  # the flipped seed does not count
    assert stats.mean([0.0, 1.0, 2.0, 100.0]) == pytest.approx(25.75)


def test_the_bootstrap_interval_of_two_runs_is_known():
    # Resampling [0, 1]: means 0, 0.5 and 1 with chances 1/4, 1/2, 1/4; the 2.5th and
    # 97.5th percentiles are 0 and 1.
    assert stats.interval([0.0, 1.0]) == (0.0, 1.0)
    assert stats.interval([7.0, 7.0, 7.0]) == (7.0, 7.0)


def test_the_bootstrap_interval_of_many_runs_matches_the_normal_theory():
    values = np.random.default_rng(0).normal(100.0, 20.0, size=400)
    low, high = stats.interval(values)
    half_width = 1.96 * values.std(ddof=1) / np.sqrt(len(values))
    assert low == pytest.approx(values.mean() - half_width, abs=0.1 * half_width)
    assert high == pytest.approx(values.mean() + half_width, abs=0.1 * half_width)


def test_the_interval_is_seeded_and_leaves_numpys_global_generator_alone():
    # rliable draws its resamples from numpy's global RNG, ignoring its random_state.
    values = [1500.0, 4500.0, 4600.0, 1400.0, 3000.0]
    np.random.seed(5)
    expected_next = np.random.rand()
    np.random.seed(5)
    first = [stats.interval(values) for _ in range(3)]
    assert first == [first[0]] * 3
    assert np.random.rand() == expected_next
    assert stats.interval(values, seed=1) != first[0]


def test_every_statistic_has_a_summary():
    values = [1400.0, 1500.0, 3000.0, 4500.0, 4600.0]
    assert stats.summarise(values, "mean") == pytest.approx(3000.0)
    assert stats.summarise(values, "iqm") == pytest.approx(3000.0)
    assert stats.summarise(values, "lcb") == stats.interval(values)[0] < 3000.0
    assert set(stats.STATISTICS) == {"mean", "iqm", "lcb"}
