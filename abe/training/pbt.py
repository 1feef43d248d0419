"""Population-based training (Jaderberg et al. 2017) of a job's K seeds, in one process.

The members are the seeds of one job (`n_seeds`), each starting from its own lr and
gamma drawn from `pbt.space`. Every `pbt.interval` env steps (per member) the members
are ranked on their training return since the last round; each member of the bottom
`quantile` copies the state of one of the top `quantile` (weights, optimizer state,
observation and return statistics; not its envs or random streams, which stay its own)
and explores: lr and gamma are multiplied by one of `perturb`'s factors (gamma on the
1 - gamma scale), or drawn afresh with probability `resample`, kept inside the space.

A copy is an in-memory `load_state_dict` of deep copies, so nothing of the donor is
shared with the copy afterwards. The random draws of a round come from a generator
seeded with (seed, round), so a resumed population makes the same choices.
"""

from __future__ import annotations

import copy
import logging

import numpy as np

from abe.core.schema import Config, PbtConfig
from abe.training.callbacks import Callback
from abe.training.trainer import Member, Trainer

log = logging.getLogger(__name__)

STARTS_STREAM = 0  # the generator of the starting values: (seed, 0); round r draws from (seed, r)


def draw(entry: dict, rng: np.random.Generator) -> float:
    """One value from a space entry: {choices} uniformly, {low, high, log} (log-)uniformly."""
    if "choices" in entry:
        return float(entry["choices"][rng.integers(len(entry["choices"]))])
    low, high = entry["low"], entry["high"]
    if entry["log"]:
        return float(np.exp(rng.uniform(np.log(low), np.log(high))))
    return float(rng.uniform(low, high))


def starting_values(cfg: Config) -> list[tuple[float, float]]:
    """Each member's starting (lr, gamma): drawn where `pbt.space` names the key, else the config's."""
    rng = np.random.default_rng([cfg.seed, STARTS_STREAM])
    space = cfg.pbt.space
    starts = []
    for _ in range(cfg.n_seeds):
        lr = draw(space["lr"], rng) if "lr" in space else cfg.lr
        gamma = draw(space["gamma"], rng) if "gamma" in space else cfg.gamma
        starts.append((lr, gamma))
    return starts


def member_configs(cfg: Config) -> list[Config]:
    """The configs a job's members train with: its seeds, each with its own starting lr and
    gamma under PBT (each re-runnable alone: `seed_<n>/.hydra/config.yaml`)."""
    seeds = range(cfg.seed, cfg.seed + cfg.n_seeds)
    if cfg.pbt is None:
        return [cfg.with_seed(seed) for seed in seeds]
    return [cfg.member(seed, lr, gamma) for seed, (lr, gamma) in zip(seeds, starting_values(cfg), strict=True)]


def bounds(entry: dict) -> tuple[float, float]:
    return (min(entry["choices"]), max(entry["choices"])) if "choices" in entry else (entry["low"], entry["high"])


def explore(pbt: PbtConfig, lr: float, gamma: float, rng: np.random.Generator) -> tuple[float, float]:
    """New lr and gamma near the copied ones: perturbed by a factor or drawn afresh."""
    values = {"lr": lr, "gamma": gamma}
    for key, entry in pbt.space.items():
        if rng.random() < pbt.resample:
            values[key] = draw(entry, rng)
            continue
        factor = pbt.perturb[rng.integers(2)]
        if key == "gamma":  # on the horizon's scale: 1 - gamma
            values[key] = 1.0 - (1.0 - values[key]) * factor
        else:
            values[key] *= factor
        low, high = bounds(entry)
        values[key] = float(np.clip(values[key], low, high))
    return values["lr"], values["gamma"]


def copy_state(donor: Member, recipient: Member) -> None:
    """The donor's weights, optimizer state and statistics into the recipient (deep copies:
    torch's optimizer `load_state_dict` keeps the tensors it is given)."""
    agent, source = recipient.agent, donor.agent
    agent.algorithm.load_state_dict(copy.deepcopy(source.algorithm.state_dict()))
    agent.normalizer.load_state_dict(copy.deepcopy(source.normalizer.state_dict()))
    theirs, mine = source.algorithm.ret_rms, agent.algorithm.ret_rms
    mine.mean, mine.var, mine.count = copy.deepcopy((theirs.mean, theirs.var, theirs.count))


def recent_return(member: Member) -> float:
    """The mean training return of the episodes finished since the last round (at most
    the last 100; the last one if none finished since), -inf before any."""
    state = member.state
    new = min(state.episodes - state.pbt_mark, 100, len(state.episode_returns))
    recent = state.episode_returns[-max(new, 1) :]
    return float(np.mean(recent)) if recent else float("-inf")


def _finite(score: float) -> float | None:
    """A score for result.json and YAML: None before any episode finished."""
    return score if np.isfinite(score) else None


class PopulationBasedTraining(Callback):
    """Exploit and explore among the job's members every `pbt.interval` env steps."""

    def __init__(self, cfg: Config):
        self.pbt, self.seed = cfg.pbt, cfg.seed

    def on_training_start(self, trainer: Trainer) -> None:
        for member in trainer.members:
            if not member.state.schedule:  # the start of the member's schedule (kept on resume)
                member.state.schedule.append([0, member.cfg.lr, member.cfg.gamma])

    def on_update(self, trainer: Trainer) -> None:
        round_ = trainer.env_steps // self.pbt.interval
        if round_ > trainer.members[0].state.pbt_round and trainer.env_steps < trainer.cfg.trainer.total_steps:
            self.exploit_and_explore(trainer.members, round_)

    def exploit_and_explore(self, members: list[Member], round_: int) -> list[dict]:
        """One round: the bottom quantile copies the top quantile, then explores; the events."""
        rng = np.random.default_rng([self.seed, round_])
        scores = [recent_return(m) for m in members]
        order = sorted(range(len(members)), key=lambda i: (scores[i], i))  # worst first; ties by index
        count = max(1, int(len(members) * self.pbt.quantile))
        bottom, top = order[:count], order[-count:]
        donors = {i: top[rng.integers(len(top))] for i in bottom}
        snapshots = {
            j: (copy.deepcopy(members[j].state.schedule), copy.deepcopy(members[j].state.lineage))
            for j in set(donors.values())
        }
        events = []
        for i in bottom:
            donor, recipient = members[donors[i]], members[i]
            copy_state(donor, recipient)
            lr, gamma = explore(self.pbt, donor.lr, donor.gamma, rng)
            schedule, lineage = snapshots[donors[i]]
            event = {
                "round": round_,
                "env_steps": recipient.state.env_steps,
                "member": recipient.cfg.seed,
                "copied": donor.cfg.seed,
                "their_return": _finite(scores[donors[i]]),
                "own_return": _finite(scores[i]),
                "lr": lr,
                "gamma": gamma,
            }
            recipient.state.schedule = copy.deepcopy(schedule)  # the copied weights' history of lr and gamma
            recipient.state.lineage = [*copy.deepcopy(lineage), event]
            recipient.set_hparams(lr, gamma)
            events.append(event)
            log.info(
                "PBT round %d: seed %d (%.1f) copies seed %d (%.1f); lr %.3g, gamma %.5g",
                round_,
                recipient.cfg.seed,
                scores[i],
                donor.cfg.seed,
                scores[donors[i]],
                lr,
                gamma,
            )
        for member in members:
            member.state.pbt_round, member.state.pbt_mark = round_, member.state.episodes
        return events
