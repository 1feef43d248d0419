"""The Optuna study a sweep writes to, checked before anything runs.

A study's values only compare when its trials were trained the same way: a trial at
another budget, on other seeds or with another objective statistic is another
experiment. Each study records the settings that define what its values mean
(`abe_settings` in its user attributes); a sweep whose settings differ refuses to join
it, in one line that names the differences and how to start a new study.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import optuna
from omegaconf import DictConfig, OmegaConf

from abe.core.errors import ConfigError, first_line
from abe.core.locks import opening, sqlite_path
from abe.core.secrets import mask_secrets

SETTINGS_ATTR = "abe_settings"
# What a trial's value depends on besides the searched params (those vary by design).
SETTINGS = ("env.id", "env.kwargs", "trainer.total_steps", "trainer.eval_episodes", "seed", "n_seeds", "seed_statistic")
CONNECT_TIMEOUT_S = 5  # a PostgreSQL server that does not answer fails the check, not hangs it
# sqlite lets one writer in at a time; the others wait up to this long for the lock
# (Python's default is 5 s: two sweepers on one study then failed with "database is locked").
SQLITE_BUSY_TIMEOUT_S = 60
HEARTBEAT_GRACE = 4  # heartbeats a sweeper may miss (a busy machine) before its trials count as abandoned


def searched_keys(task_overrides: list[str], params: Mapping | None) -> set[str]:
    """The keys a sweep searches: its search space (`hydra.sweeper.params`) and the
    command line's sweep overrides (`lr=1e-3,3e-4`, `network.width=choice(64,128)`)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(task_overrides))
    return {o.key_or_group for o in parsed if o.is_sweep_override()} | set(params or {})


def study_settings(cfg: DictConfig, searched: set[str] = frozenset()) -> dict[str, str]:
    """The SETTINGS of a composed config (its `hydra` part aside), as strings; searched keys left out."""
    found = {}
    for key in SETTINGS:
        if key not in searched:
            node = OmegaConf.select(cfg, key)
            found[key] = str(OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node)
    return found


def open_storage(url: str, heartbeat_s: int | None = None) -> optuna.storages.BaseStorage:
    """The study storage at `url`; one line naming it and what to do if it cannot be opened.
    With `heartbeat_s`, RUNNING trials whose heartbeat is older than HEARTBEAT_GRACE x
    heartbeat_s count as stale (their sweeper died, on whatever machine)."""
    kwargs = {}
    if url.startswith("postgresql"):
        kwargs = {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}}
    elif url.startswith("sqlite"):  # two sweepers (or a sweeper and its trials) write at once
        kwargs = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
    path = sqlite_path(url)
    if path is not None and not path.is_absolute():  # like Hydra's run dirs: made under the working dir
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with opening(url), warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats
            grace = heartbeat_s and HEARTBEAT_GRACE * heartbeat_s
            return optuna.storages.RDBStorage(
                url, engine_kwargs=kwargs, heartbeat_interval=heartbeat_s, grace_period=grace
            )
    except Exception as ex:  # missing folder or driver, refused connection, bad credentials, malformed URL
        reason = mask_secrets(first_line(ex)).split(" (Background on this error")[0]
        raise ConfigError(
            f"hydra.sweeper.storage: cannot open '{mask_secrets(url)}' ({type(ex).__name__}: {reason[:200]}); "
            "check the path's folder, the server, the credentials and the driver (PostgreSQL: pip install "
            "psycopg2-binary), or give another storage"
        ) from None


def check_study(url: str | None, study_name: str, settings: dict[str, str]) -> None:
    """Fail before the sweep when its storage cannot be opened, or when the study it would
    join was made with other settings."""
    if url is None:
        return  # in memory: a new study every time
    storage = open_storage(str(url))
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        return  # a new study: the sweeper records its settings
    recorded = study.user_attrs.get(SETTINGS_ATTR)
    if recorded is None:
        return  # made before abe recorded settings: the sweeper records them now
    differences = [f"{k}={recorded.get(k)} there, {v} here" for k, v in settings.items() if recorded.get(k) != v]
    if differences:
        raise ConfigError(
            f"hydra.sweeper.study_name: study '{study_name}' in {mask_secrets(str(url))} was made with other settings "
            f"({'; '.join(differences)}); its values would not compare: name a new study with "
            "hydra.sweeper.study_name=<name>, or use its settings"
        )
