"""Every config group option and every experiment composes, validates and builds."""


import pytest

from abe import CONFIG_DIR, PROJECT_ROOT
from abe.agent import build_agent
from abe.config import validate
from abe.envs import make_vector_env


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def test_every_group_has_the_options_of_the_public_contract():
    assert options("env") == ["halfcheetah", "hopper", "mountaincar", "pendulum", "walker2d"]
    assert options("optimizer") == ["adam", "rmsprop", "sgd"]
    assert {"tutorial4", "halfcheetah"} <= set(options("experiment"))
    # experiments/ at the top level is the `experiment` group (conf/experiment links to it)
    assert (CONFIG_DIR / "experiment").resolve() == (PROJECT_ROOT / "experiments").resolve()


def build(cfg):
    validate(cfg)
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
    assert agent.actor.log_std.numel() == agent.policy.action_space.shape[0]


def test_top_level_names_feed_the_objects_they_configure(make_cfg):
    cfg = make_cfg("optimizer=adam", "lr=3e-4", "gamma=0.995", "optimizer.weight_decay=1e-4",
                   "network.width=32", "network.depth=3", "network.layer_norm=true")
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
        comments = [l for l in lines[:12] if l.startswith("#") and "@package" not in l]
        assert comments, f"{path.name} does not say what it is for"
