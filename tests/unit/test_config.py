"""Every config group option and every experiment composes, validates and builds."""

import pytest

from abe import CONFIG_DIR, PROJECT_ROOT
from abe.agent.agent import build_agent
from abe.commands.hydra_edge import check_runtime
from abe.core.errors import ConfigError
from abe.core.schema import ADDED_LATER, Config
from abe.envs.vector import make_vector_env


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def test_every_group_has_the_options_of_the_public_contract():
    assert options("env") == [
        "ant",
        "halfcheetah",
        "hopper",
        "inverted_double_pendulum",
        "inverted_pendulum",
        "mountaincar",
        "pendulum",
        "reacher",
        "swimmer",
        "walker2d",
    ]
    assert options("optimizer") == ["adam", "rmsprop", "sgd"]
    assert {"tutorial4", "halfcheetah"} <= set(options("experiment"))
    # experiments/ at the top level is the `experiment` group (conf/experiment links to it)
    assert (CONFIG_DIR / "experiment").resolve() == (PROJECT_ROOT / "experiments").resolve()


def build(cfg):
    check_runtime(cfg)
    envs = make_vector_env(cfg.env.id, 1)
    try:
        agent = build_agent(cfg, envs.single_observation_space, envs.single_action_space)
    finally:
        envs.close()
    return agent


@pytest.mark.parametrize(
    "override",
    [f"env={o}" for o in options("env")]
    + [f"network={o}" for o in options("network")]
    + [f"optimizer={o}" for o in options("optimizer")]
    + [f"experiment={o}" for o in options("experiment")]
    + ["logger=none", "logger=mlflow"],
)
def test_option_composes_and_builds(make_cfg, override):
    agent = build(make_cfg(override))
    action_dim = agent.policy.action_space.shape[0]
    assert agent.actor.mean_net[-1].out_features == action_dim
    assert agent.actor.log_std.shape[-1] == action_dim  # (action_dim,), or (latent, action_dim) with gSDE


def test_top_level_names_feed_the_objects_they_configure(make_cfg):
    cfg = make_cfg(
        "optimizer=adam",
        "lr=3e-4",
        "gamma=0.995",
        "optimizer.weight_decay=1e-4",
        "network.width=32",
        "network.depth=3",
        "network.layer_norm=true",
    )
    agent = build(cfg)
    group = agent.algorithm.optim._optim.param_groups[0]
    assert (group["lr"], group["weight_decay"]) == (3e-4, 1e-4)
    assert agent.algorithm.gamma == 0.995
    layer_norms = [m for m in agent.actor.mean_net if type(m).__name__ == "LayerNorm"]
    assert len(layer_norms) == 3 and layer_norms[0].normalized_shape == (32,)


def test_tutorial4_preset_is_the_tutorials_setup(make_cfg):
    cfg = make_cfg("experiment=tutorial4")
    assert cfg.env.id == "MountainCarContinuous-v0"
    assert (cfg.network.width, cfg.network.layer_norm, cfg.network.activation) == (128, True, "relu")
    assert (cfg.optimizer.name, cfg.lr, cfg.optimizer.weight_decay, cfg.gamma) == ("adam", 1e-5, 1e-4, 0.99)
    assert (cfg.algo.n_steps, cfg.trainer.num_envs) == (30, 1)


def test_any_gymnasium_id_works_through_env_id(make_cfg):
    agent = build(make_cfg("env.id=InvertedPendulum-v5"))
    assert agent.policy.action_space.shape == (1,)


def test_experiments_state_their_purpose_in_a_comment():
    for path in (PROJECT_ROOT / "experiments").glob("*.yaml"):
        lines = path.read_text().splitlines()
        comments = [line for line in lines[:12] if line.startswith("#") and "@package" not in line]
        assert comments, f"{path.name} does not say what it is for"


def test_the_typed_config_round_trips_through_plain_values(make_cfg):
    for overrides in (
        ["optimizer=adam"],
        ["optimizer=sgd", "optimizer.momentum=0.9"],
        ["logger=none"],
        ["experiment=tutorial4", "+env.kwargs.goal_velocity=0.1"],
    ):
        cfg = make_cfg(*overrides)
        assert Config.from_dict(cfg.to_dict()) == cfg


def test_a_config_saved_before_a_key_existed_gets_the_value_that_reproduces_it(make_cfg):
    plain = make_cfg("logger=none").to_dict()
    for dotted in ADDED_LATER:
        *parents, key = dotted.split(".")
        node = plain
        for part in parents:
            node = node[part]
        del node[key]
    old = Config.from_dict(plain)
    assert (old.n_seeds, old.env.threads, old.algo.lr_decay, old.algo.normalize_advantage) == (1, 0, False, False)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["algo"].pop("gae_lambda"), "algo.gae_lambda: missing from the config"),
        (lambda d: d["algo"].update(clip_ratio=0.2), "unknown config key 'algo.clip_ratio'; algo has: n_steps,"),
        (lambda d: d.update(launcher="x"), "unknown config key 'launcher'; the top level has: lr, gamma"),
        (lambda d: d["optimizer"].update(betas=[0.9, 1.5]), "optimizer.betas: got [0.9, 1.5]; allowed: two numbers"),
        (lambda d: d.update(network=3), "network: got 3 instead of a section of keys"),
        (lambda d: d["trainer"].update(device="tpu"), "trainer.device: got 'tpu'; allowed: one of cpu, cuda, auto"),
    ],
)
def test_a_bad_plain_config_names_the_key_and_what_is_allowed(make_cfg, change, message):
    plain = make_cfg("optimizer=adam").to_dict()
    change(plain)
    with pytest.raises(ConfigError) as error:
        Config.from_dict(plain)
    assert str(error.value).startswith(message), error.value


def test_the_slurm_preset_is_the_submitit_launcher_with_abes_defaults():
    from abe.commands.hydra_edge import compose

    # the preset builds on the plugin's config: without the extra there is nothing to compose
    pytest.importorskip(
        "hydra_plugins.hydra_submitit_launcher", reason="needs the `slurm` extra (pip install -e '.[slurm]')"
    )

    launcher = compose(["hydra/launcher=slurm", "hydra.launcher.partition=cpu"], with_hydra=True).hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (launcher.partition, launcher.cpus_per_task, launcher.timeout_min, launcher.max_num_timeout) == (
        "cpu",
        2,
        120,
        3,
    )


@pytest.mark.parametrize(
    "value",
    ["lr=1e-3", "gamma=0.99", "network.width=48", "trainer.total_steps=2048", "algo.lr_decay=false", "seed=7"],
)
def test_a_sweep_value_set_on_one_composition_is_the_config_composing_gives(value):
    # run.py checks a sweep's values by setting each on the fixed overrides' composition
    # (hydra_edge._with_value) instead of composing again: the same typed config
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    from abe.commands.hydra_edge import _with_value, compose, to_config

    fixed = ["env=halfcheetah", "optimizer=adam"]
    job = OmegaConf.masked_copy(composed := compose(fixed, with_hydra=True), [k for k in composed if k != "hydra"])
    override = OverridesParser.create().parse_override(value)
    assert _with_value(job, override, CONFIG_DIR) == to_config(compose([*fixed, value]))
    assert _with_value(job, OverridesParser.create().parse_override("env=hopper"), CONFIG_DIR) is None  # a group
