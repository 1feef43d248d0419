"""Population-based training: the exploit-and-explore step, the lr it really applies, a
never-exploited member's exactness, determinism, resume, and the schedule's replay."""

import contextlib
import copy

import numpy as np
import pytest
import torch

from abe.core.errors import ConfigError
from abe.core.result import OBJECTIVE
from abe.training.callbacks import Callback, Checkpointer
from abe.training.loop import build_member, train, train_seeds
from abe.training.pbt import PopulationBasedTraining, explore, member_configs, starting_values
from tests.conftest import TINY

SPACE = "{lr: {low: 1e-4, high: 3e-3, log: true}, gamma: {choices: [0.9, 0.95, 0.98, 0.99]}}"


def pbt(interval=1024, quantile=0.34, resample=0.25):
    options = f"interval: {interval}, quantile: {quantile}, resample: {resample}, perturb: [0.8, 1.25]"
    return f"pbt={{{options}, space: {SPACE}}}"


POPULATION = [
    "env=pendulum",
    "seed=3",
    "n_seeds=3",
    "trainer.num_envs=4",
    "trainer.total_steps=4096",
    "trainer.eval_every=1024",
    "trainer.eval_episodes=2",
    "logger=none",
]


def evals(result):
    return [(e["env_steps"], e[OBJECTIVE]) for e in result.evaluations]


def test_members_start_from_their_own_seeded_draws_of_the_space(make_cfg):
    cfg = make_cfg(*POPULATION, pbt())
    members = member_configs(cfg)
    assert [m.seed for m in members] == [3, 4, 5] and all(m.pbt is None and m.n_seeds == 1 for m in members)
    starts = [(m.lr, m.gamma) for m in members]
    assert starts == starting_values(cfg) == starting_values(make_cfg(*POPULATION, pbt()))  # seeded
    assert len(set(starts)) == 3 and all(1e-4 <= lr <= 3e-3 and g in (0.9, 0.95, 0.98, 0.99) for lr, g in starts)
    assert starting_values(make_cfg(*POPULATION, "seed=4", pbt())) != starts


def test_explore_perturbs_by_a_factor_or_redraws_and_stays_in_the_space(make_cfg):
    space = make_cfg(*POPULATION, pbt(resample=0.0)).pbt
    rng = np.random.default_rng(0)
    seen = {explore(space, 1e-3, 0.95, rng) for _ in range(50)}
    lrs = {round(lr, 12) for lr, _ in seen}
    gammas = {round(g, 12) for _, g in seen}
    assert lrs == {8e-4, 1.25e-3} and gammas == {0.96, 0.9375}  # gamma on the 1 - gamma scale
    assert explore(space, 3e-3, 0.99, np.random.default_rng(1))[0] <= 3e-3  # clipped to the space
    redrawn = make_cfg(*POPULATION, pbt(resample=1.0)).pbt
    draws = [explore(redrawn, 1e-3, 0.95, rng) for _ in range(20)]
    assert all(g in (0.9, 0.95, 0.98, 0.99) for _, g in draws) and len({lr for lr, _ in draws}) == 20


def test_the_bottom_copies_the_top_and_its_optimizer_really_uses_the_new_lr(make_cfg, tmp_path):
    cfg = make_cfg(*POPULATION, pbt())
    with contextlib.ExitStack() as closing:
        members = [build_member(c, tmp_path / str(c.seed), None, closing) for c in member_configs(cfg)]
        for member, score in zip(members, (-500.0, -100.0, -900.0), strict=True):
            member.state.episode_returns, member.state.episodes = [score], 1
        # an update on the donor, so that it has optimizer state to copy
        donor = members[1]
        loss = sum(p.sum() for p in donor.agent.algorithm.parameters())
        donor.agent.algorithm.optim.step(loss)
        generator_before = members[2].generator.get_state()
        callback = PopulationBasedTraining(cfg)
        callback.on_training_start(type("T", (), {"members": members})())
        (event,) = callback.exploit_and_explore(members, round_=1)

        worst = members[2]
        assert (event["member"], event["copied"]) == (5, 4)
        for mine, theirs in zip(worst.agent.algorithm.parameters(), donor.agent.algorithm.parameters(), strict=True):
            assert torch.equal(mine, theirs) and mine.data_ptr() != theirs.data_ptr()
        assert torch.equal(worst.agent.normalizer.mean, donor.agent.normalizer.mean)
        assert torch.equal(worst.generator.get_state(), generator_before)  # its random stream stays its own
        # the lr the recipient's optimizer will use is the explored one, not the donor's it loaded
        applied = [group["lr"] for group in worst.agent.optimizer.param_groups]
        assert applied == [event["lr"]] and event["lr"] != donor.lr
        assert worst.agent.algorithm.gamma == event["gamma"]
        assert worst.state.schedule == [[0, donor.cfg.lr, donor.cfg.gamma], [0, event["lr"], event["gamma"]]]
        # nothing of the donor is shared: stepping the recipient leaves the donor's optimizer state alone
        donor_state = copy.deepcopy(donor.agent.optimizer.state_dict())
        worst.agent.algorithm.optim.step(sum(p.sum() for p in worst.agent.algorithm.parameters()))
        for key, state in donor.agent.optimizer.state_dict()["state"].items():
            for name, value in state.items():
                assert torch.equal(value, donor_state["state"][key][name])


def test_a_population_repeats_itself_and_a_never_exploited_member_trains_as_alone(make_cfg, tmp_path):
    cfg = make_cfg(*POPULATION, pbt())
    configs = member_configs(cfg)
    first = train_seeds(cfg, configs, [tmp_path / "a" / str(c.seed) for c in configs])
    again = train_seeds(cfg, configs, [tmp_path / "b" / str(c.seed) for c in configs])
    assert [evals(r) for r in first] == [evals(r) for r in again]
    assert [r.lineage for r in first] == [r.lineage for r in again]
    copied = [r for r in first if r.lineage]
    untouched = [(c, r) for c, r in zip(configs, first, strict=True) if not r.lineage]
    assert copied and untouched  # three rounds: someone copied, someone never was
    for member_cfg, result in untouched:
        alone = train(member_cfg, tmp_path / f"alone{member_cfg.seed}")
        assert evals(result) == evals(alone)
    last = copied[0].lineage[-1]
    assert copied[0].schedule[-1] == [last["env_steps"], last["lr"], last["gamma"]]
    # pendulum decays lr: from the explored lr, not the config's
    (record,) = [e for e in copied[0].evaluations if e["env_steps"] == last["env_steps"]]
    assert record["train/lr"] == pytest.approx(last["lr"] * (1 - last["env_steps"] / 4096), rel=1e-12)
    assert record["train/gamma"] == last["gamma"]


class StopAtSecondEvaluation(Callback):
    def on_evaluation(self, trainer, records) -> bool:
        self.stop_reason = "stopped on purpose"
        return records[0]["env_steps"] < 2048


def test_a_stopped_population_resumes_to_the_same_returns_and_lineage(make_cfg, tmp_path):
    cfg = make_cfg(*POPULATION, pbt())
    configs = member_configs(cfg)
    whole = train_seeds(cfg, configs, [tmp_path / "whole" / str(c.seed) for c in configs])
    dirs = [tmp_path / "cut" / str(c.seed) for c in configs]
    train_seeds(cfg, configs, dirs, [*(Checkpointer(member=i) for i in range(3)), StopAtSecondEvaluation()])
    from abe.agent.checkpoint import job_config, read_checkpoint

    states = [read_checkpoint(d / "checkpoints" / "last.pt") for d in dirs]
    assert job_config(states[0]) == cfg and states[0]["env_steps"] == 2048
    resumed = train_seeds(cfg, configs, dirs, resumes=states)
    assert [evals(r) for r in resumed] == [evals(r) for r in whole]
    assert [r.lineage for r in resumed] == [r.lineage for r in whole]


def test_a_schedule_sets_lr_and_gamma_from_its_env_steps_on(make_cfg, tmp_path):
    cfg = make_cfg(
        "env=pendulum", *TINY[:-2], "trainer.total_steps=1024", "trainer.eval_every=256", "logger=none",
        "algo.lr_decay=false", "lr=1e-3", "gamma=0.9", "schedule=[[400,5e-4,0.95],[700,2e-4,0.99]]",
    )  # fmt: skip
    result = train(cfg, tmp_path)
    seen = [(e["env_steps"], e["train/lr"], e["train/gamma"]) for e in result.evaluations]
    assert seen == [(256, 1e-3, 0.9), (512, 5e-4, 0.95), (768, 2e-4, 0.99), (1024, 2e-4, 0.99)]
    assert result.schedule == [[416, 5e-4, 0.95], [704, 2e-4, 0.99]]  # the first update at or past each


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("pbt.quantile=0.7", "pbt.quantile: got 0.7; allowed: a share in (0, 0.5]"),
        ("pbt.perturb=[1.2,0.8]", "pbt.perturb: got [1.2, 0.8]; allowed: two factors [down, up]"),
        ("n_seeds=1", "n_seeds: got 1 with pbt; allowed: a population of 2 or more members"),
        ("schedule=[[100,1e-3,0.99]]", "schedule: a population (pbt) makes its own schedules"),
        ("+pbt.space.ent_coef={choices: [0.0]}", "pbt.space: got"),
    ],
)
def test_bad_pbt_settings_are_refused_with_what_is_allowed(make_cfg, override, message):
    with pytest.raises(ConfigError, match=None) as caught:
        make_cfg(*POPULATION, pbt(), override)
    assert message in str(caught.value)


def test_a_schedule_must_rise_and_hold_valid_values(make_cfg):
    for bad in ("[[0,1e-3,0.99]]", "[[200,1e-3,0.99],[100,1e-3,0.99]]", "[[200,-1,0.99]]"):
        with pytest.raises(ConfigError, match="schedule: got"):
            make_cfg(f"schedule={bad}")
