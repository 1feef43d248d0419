"""Learning tests: the agent must beat a threshold, not just run."""

import pytest

from abe.envs.vector import make_vector_env
from abe.training.evaluation import run_episodes
from abe.training.loop import train
from tests.conftest import random_policy


@pytest.mark.slow
def test_halfcheetah_learns_well_above_random(make_cfg, tmp_path):
    # The default setup at a fifth of its budget: ~30 s here. Seeds 0/1/2 reach
    # 526/469/623; a uniform random policy gets about -280 and standing still about 0.
    cfg = make_cfg(
        "trainer.total_steps=200000", "trainer.eval_every=100000", "trainer.progress_bar=false", "logger=none"
    )
    result = train(cfg, tmp_path)
    envs = make_vector_env(cfg.env.id, cfg.trainer.eval_episodes)
    random_return = run_episodes(random_policy(envs, cfg.seed), envs, cfg.seed).mean()
    envs.close()
    assert random_return < -150
    assert result.eval_return_mean > 300, result.evaluations
    assert result.eval_return_mean > random_return + 450
