"""Hydra sweep overrides as Optuna distributions (abe.sweeps.search_space), with the
conventions hydra-optuna-sweeper used, so studies it made carry over."""

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from abe.sweeps.search_space import SearchSpace


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("lr=tag(log, interval(1e-5, 3e-3))", FloatDistribution(1e-5, 3e-3, log=True)),
        ("lr=interval(0.1, 0.5)", FloatDistribution(0.1, 0.5)),
        ("n=interval(1, 5)", FloatDistribution(1.0, 5.0)),  # Hydra reads an interval's bounds as floats
        ("n=int(interval(1, 5))", IntDistribution(1, 5)),
        ("n=tag(log, int(interval(1, 64)))", IntDistribution(1, 64, log=True)),
        ("gamma=choice(0.9, 0.99)", CategoricalDistribution([0.9, 0.99])),
        ("act=choice(relu, tanh)", CategoricalDistribution(["relu", "tanh"])),
        ("depth=range(1, 4)", IntDistribution(1, 3)),  # Hydra's end is exclusive
        ("width=range(64, 257, 64)", IntDistribution(64, 256, step=64)),
        ("x=range(0.1, 0.4, 0.1)", FloatDistribution(0.1, 0.3, step=0.1)),
    ],
)
def test_each_sweep_override_becomes_its_distribution(override, expected):
    assert SearchSpace.parse([override]).distributions == {override.split("=")[0]: expected}


def test_the_command_line_overrides_the_configured_space_and_single_values_are_fixed():
    space = SearchSpace.parse(["lr=interval(0.1, 0.2)", "gamma=choice(0.9, 0.99)", "lr=0.5", "~algo.x", "env=pendulum"])
    assert list(space.distributions) == ["gamma"]
    assert space.fixed == {"lr": "0.5", "env": "pendulum"}
    assert space.deletions == ["~algo.x"]


def test_a_trial_gets_its_drawn_values_and_the_fixed_ones_as_overrides():
    space = SearchSpace.parse(["lr=tag(log, interval(1e-5, 1e-3))", "gamma=choice(0.9, 0.99)", "env=pendulum"])
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    overrides = space.suggest(trial)
    assert overrides == [f"lr={trial.params['lr']}", f"gamma={trial.params['gamma']}", "env=pendulum"]
    assert 1e-5 <= trial.params["lr"] <= 1e-3 and trial.user_attrs == {"env": "pendulum"}
    assert trial.distributions == space.distributions


def test_the_grid_lists_every_value_and_refuses_an_interval():
    space = SearchSpace.parse(["a=choice(1, 2)", "b=range(0, 3)", "c=range(0.5, 1.6, 0.5)"])
    assert space.grid() == {"a": [1, 2], "b": [0, 1, 2], "c": [0.5, 1.0, 1.5]}
    with pytest.raises(ValueError, match="lr: the grid sampler needs listed values"):
        SearchSpace.parse(["lr=interval(0.1, 0.2)"]).grid()


def test_the_wide_preset_searches_eleven_keys_and_every_draw_is_a_valid_config(make_cfg):
    import yaml

    from abe import CONFIG_DIR
    from abe.commands.hydra_edge import check_command_line

    params = yaml.safe_load((CONFIG_DIR / "hparams_search" / "a2c_wide.yaml").read_text())["hydra"]["sweeper"]["params"]
    space = SearchSpace.parse([f"{key}={value}" for key, value in params.items()])
    assert len(space.distributions) == 11 and space.distributions["gamma"].choices[-1] == 0.9999
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        cfg = make_cfg("env=hopper", *space.suggest(study.ask()))  # raises on any value the schema refuses
        assert cfg.trainer.num_envs in (8, 16, 32) and cfg.algo.return_std_from in ("returns", "rewards")
    assert check_command_line(["-m", "hparams_search=a2c_wide", "env=hopper"]) is None  # the sweep's checks pass
