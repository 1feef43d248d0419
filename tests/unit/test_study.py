"""A sweep's study storage is opened, and its settings compared, before anything runs."""

import optuna
import pytest
from omegaconf import OmegaConf

from abe.core.errors import ConfigError
from abe.sweeps.study import SETTINGS_ATTR, check_study, searched_keys, study_settings


def settings(**changes) -> dict[str, str]:
    job = {
        "env": {"id": "Pendulum-v1", "kwargs": {}},
        "trainer": {"total_steps": 4096, "eval_episodes": 2},
        "seed": 0,
        "n_seeds": 1,
        "seed_statistic": "lcb",
        "lr": 1e-3,
    }
    job.update(changes)
    return study_settings(OmegaConf.create(job), {"lr"})


def test_the_settings_are_what_a_trials_value_depends_on():
    assert settings() == {
        "env.id": "Pendulum-v1",
        "env.kwargs": "{}",
        "trainer.total_steps": "4096",
        "trainer.eval_episodes": "2",
        "seed": "0",
        "n_seeds": "1",
        "seed_statistic": "lcb",
    }
    assert searched_keys(["lr=1e-3,3e-4", "gamma=0.9", "network.width=choice(64,128)"], {"gamma": "x"}) == {
        "lr",
        "network.width",
        "gamma",
    }


def test_a_study_made_with_other_settings_is_refused_with_the_differences(tmp_path):
    url = f"sqlite:///{tmp_path / 'o.db'}"
    check_study(url, "s", settings())  # no such study yet: fine
    study = optuna.create_study(study_name="s", storage=url)
    check_study(url, "s", settings())  # made before abe recorded settings: fine
    study.set_user_attr(SETTINGS_ATTR, settings())
    check_study(url, "s", settings())
    with pytest.raises(ConfigError) as error:
        check_study(url, "s", settings(trainer={"total_steps": 200000, "eval_episodes": 2}, n_seeds=4))
    assert str(error.value) == (
        f"hydra.sweeper.study_name: study 's' in {url} was made with other settings (trainer.total_steps=4096 "
        "there, 200000 here; n_seeds=1 there, 4 here); its values would not compare: name a new study with "
        "hydra.sweeper.study_name=<name>, or use its settings"
    )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "sqlite:////no/such/folder/o.db",
            "hydra.sweeper.storage: cannot open 'sqlite:////no/such/folder/o.db' "
            "(OperationalError: (sqlite3.OperationalError) unable to open database file)",
        ),
        (
            "postgresql+psycopg2://abe:hunter2@127.0.0.1:1/optuna",
            "hydra.sweeper.storage: cannot open 'postgresql+psycopg2://abe:***@127.0.0.1:1/optuna'",
        ),
        ("nosuchdb://x", "hydra.sweeper.storage: cannot open 'nosuchdb://x' (NoSuchModuleError"),
        ("not a url", "hydra.sweeper.storage: cannot open 'not a url' (ArgumentError"),
    ],
)
def test_a_storage_that_cannot_be_opened_is_one_line(url, message):
    with pytest.raises(ConfigError) as error:
        check_study(url, "s", settings())
    text = str(error.value)
    assert text.startswith(message), text
    assert "\n" not in text and "hunter2" not in text and "check the path's folder" in text
