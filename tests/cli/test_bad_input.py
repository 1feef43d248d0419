"""Bad input fails before training: one line naming the key and what is allowed,
exit code 2, no traceback, no run dir."""

import pytest

from abe.commands.hydra_edge import check_command_line
from tests.conftest import run_cli

CASES = [
    (
        ["env=atari"],
        "env: unknown option 'atari'; allowed: ant, halfcheetah, hopper, inverted_double_pendulum, "
        "inverted_pendulum, mountaincar, pendulum, reacher, swimmer, walker2d",
    ),
    (["optimizer=adamw"], "optimizer: unknown option 'adamw'; allowed: adam, rmsprop, sgd"),
    (["env.id=HalfCheetah-v9"], "env.id: unknown Gymnasium environment 'HalfCheetah-v9'; did you mean"),
    (["env.id=CartPole-v1"], "env.id: 'CartPole-v1' has a Discrete action space; abe's A2C needs a continuous (Box)"),
    (["lr=0"], "lr: got 0; allowed: a number > 0"),
    (["lr=-3e-4"], "lr: got -0.0003; allowed: a number > 0"),
    (["lr=fast"], "lr: got 'fast'; allowed: a number > 0"),
    (["gamma=0"], "gamma: got 0; allowed: a number in (0, 1]"),
    (["gamma=1.01"], "gamma: got 1.01; allowed: a number in (0, 1]"),
    (["network.width=0"], "network.width: got 0; allowed: an integer >= 1"),
    (["network.depth=0"], "network.depth: got 0; allowed: an integer >= 1"),
    (["network.activation=sigmoid"], "network.activation: got 'sigmoid'; allowed: one of relu, tanh"),
    (["trainer.num_envs=0"], "trainer.num_envs: got 0; allowed: an integer >= 1"),
    (["trainer.total_steps=-5"], "trainer.total_steps: got -5; allowed: an integer >= 1"),
    (["lr=[1e-3"], "malformed override 'lr=[1e-3'"),
    (["network.widht=64"], "unknown config key 'network.widht'; network has: width, depth, activation"),
    (["learning_rate=1e-3"], "unknown config key 'learning_rate'; the top level has: lr, gamma, seed, n_seeds, seed_"),
    (["-m", "lr=0", "gamma=0.9,0.99"], "lr: got 0"),  # a sweep's fixed values are checked up front
    (["hparams_search=lr_gamma"], "hparams_search=lr_gamma: a search runs as a sweep: add -m (python run.py -m"),
    (["env.backend=ray"], "env.backend: got 'ray'; allowed: one of sync, async, envpool"),
    (["env.backend=envpool", "env.threads=-1"], "env.threads: got -1; allowed: an integer >= 0 (0: one per CPU core)"),
    (
        ["-m", "hparams_search=lr_gamma", "hydra.sweeper.pruner=bogus"],
        "hydra.sweeper.pruner: got 'bogus'; allowed: median, percentile, hyperband, none",
    ),
    (
        ["-m", "hparams_search=lr_gamma", "hydra.sweeper.pruner_keep=2"],
        "hydra.sweeper.pruner_keep: got 2.0; allowed: a share of trials in (0, 1]",
    ),
    (
        ["-m", "hparams_search=lr_gamma", "hydra.sweeper.heartbeat_s=-5"],
        "hydra.sweeper.heartbeat_s: got -5; allowed: an integer >= 0 (seconds; 0: off)",
    ),
    (
        ["-m", "hparams_search=lr_gamma", "hydra.sweeper.max_env_steps=-1"],
        "hydra.sweeper.max_env_steps: got -1; allowed: an integer >= 0 (env steps of all seeds; 0: no budget)",
    ),
    (
        ["-m", "hparams_search=lr_gamma", "hydra.sweeper.storage=sqlite:////no/such/folder/o.db"],
        "hydra.sweeper.storage: cannot open 'sqlite:////no/such/folder/o.db' (OperationalError",
    ),
    (
        ["-m", "hparams_search=lr_gamma", "hydra.sweeper.confirm_top=-1"],
        "hydra.sweeper.confirm_top: got -1; allowed: an integer >= 0 (0: no confirmation)",
    ),
    (
        ["-m", "hparams_search=lr_gamma", "hydra.sweeper.prune_on=loss"],
        "hydra.sweeper.prune_on: got 'loss'; allowed: train/episode_return, eval/return_mean",
    ),
    (
        ["env.backend=envpool", "+env.kwargs.default_camera_config={distance: 4.0}"],
        "env.kwargs: EnvPool cannot build 'HalfCheetah-v5' with {'default_camera_config': {'distance': 4.0}}: "
        "Config.__new__() got an unexpected",
    ),
    (
        ["env.kwargs.ctrl_cost=0.1"],
        "env.kwargs.ctrl_cost: HalfCheetah-v5 takes no keyword 'ctrl_cost'; it takes: xml_file, frame_skip, ",
    ),
    (
        ["+env.kwargs.foo=1", "env=pendulum"],
        "env.kwargs.foo: Pendulum-v1 takes no keyword 'foo'; it takes: render_mode, g",
    ),
    (
        ["env.kwargs.xml_file=/etc/passwd"],
        "env.kwargs: HalfCheetah-v5 cannot run with {'xml_file': '/etc/passwd'}: XML parse error",
    ),
    # a sweep: every value of every grid and both bounds of every search interval, up front
    (["-m", "env=pendulum", "gama=0.9,0.99"], "unknown config key 'gama'; the top level has: lr, gamma, seed"),
    (["-m", "lr=1e-3,-1"], "lr: got -1; allowed: a number > 0, e.g. lr=3e-4 (a value of the sweep lr=1e-3,-1)"),
    (["-m", "env=pendulum,foo"], "env: unknown option 'foo'; allowed: ant, halfcheetah, hopper"),
    (["-m", "network.width=range(0,3)"], "network.width: got 0; allowed: an integer >= 1"),
    (
        ["-m", "env.kwargs.ctrl_cost_weight=0.1,-x"],
        "env.kwargs: HalfCheetah-v5 cannot run with {'ctrl_cost_weight': '-x'}: can't multiply sequence",
    ),
    (
        ["-m", "hparams_search=lr_gamma", "lr=tag(log, interval(0, 1e-3))"],
        "lr: a log-scale interval needs low > 0; got lr=tag(log, interval(0, 1e-3))",
    ),
    (["-m", "hparams_search=lr_gamma", "lr=interval(1e-2, 1e-3)"], "lr: the search interval needs low < high"),
    (
        ["-m", "hparams_search=lr_gamma", "hydra.sweeper.params.gamma=choice(0.9,1.5)"],
        "gamma: got 1.5; allowed: a number in (0, 1], e.g. gamma=0.99 (a value of the sweep gamma=choice(0.9,1.5))",
    ),
    (
        ["-m", "hparams_search=lr_gamma", "hydra.sweeper.params.lr=interval(-1,1)"],
        "lr: got -1.0; allowed: a number > 0",
    ),
]


@pytest.mark.parametrize("argv,message", CASES, ids=[" ".join(a) for a, _ in CASES])
def test_bad_input_is_one_clear_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        check_command_line(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("error: " + message), err


def test_good_input_passes_the_check(capsys, tmp_path):
    check_command_line(["env=pendulum", "lr=3e-4", "gamma=0.995", "network.layer_norm=false"])
    check_command_line(
        [
            "-m",
            "hparams_search=lr_gamma",
            f"hydra.sweeper.storage=sqlite:///{tmp_path / 'o.db'}",
            "hydra.sweeper.pruner=percentile",
            "hydra/launcher=joblib",
            "network.width=choice(64,128)",
            "gamma=0.9,0.99",
        ]
    )
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("form", ["env.kwargs={ctrl_cost_weight: 0.05}", "env.kwargs.ctrl_cost_weight=0.05"])
def test_env_kwargs_in_the_documented_forms(form, capsys):
    cfg = check_command_line([form, "trainer.total_steps=64"])
    assert cfg.env.kwargs == {"ctrl_cost_weight": 0.05}
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    "args",
    [["hparams_search=lr_gamma", "hydra.sweeper.pruner=bogus"], ["env=pendulum", "lr=1e-3,-1"], ["gama=0.9,0.99"]],
)
def test_a_bad_sweep_leaves_no_sweep_behind(args, tmp_path):
    proc = run_cli(
        "-m",
        *args,
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        f"logger.store_dir={tmp_path / 'store'}",
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert not (tmp_path / "sweep").exists() and not (tmp_path / "store").exists()  # no MLflow parent run either


@pytest.mark.parametrize("args", [["env=atari"], ["gamma=2"], ["env.id=CartPole-v1"]])
def test_cli_exits_2_without_traceback_or_run_dir(args, tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli(*args, f"hydra.run.dir={run_dir}")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr + proc.stdout
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("error: ")
    assert not run_dir.exists()


def test_an_env_envpool_lacks_is_named_with_its_neighbours():
    from abe.core.errors import ConfigError
    from abe.envs.checks import check_backend

    with pytest.raises(ConfigError, match=r"env.id: 'HalfCheetah-v2' is not an EnvPool env; EnvPool has HalfCheetah-v"):
        check_backend("HalfCheetah-v2", "envpool")
