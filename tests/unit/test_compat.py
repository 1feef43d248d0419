"""The private names abe takes from its dependencies (abe/core/compat.py), checked
against the installed versions: a failure names the dependency and its version, and
means compat.py needs updating before the next release of abe."""

import importlib.metadata

import numpy as np
import pytest
import torch

from abe.core import compat


def version(package: str) -> str:
    return importlib.metadata.version(package)


@pytest.mark.filterwarnings("ignore:.*precision lowered")  # EnvPool's own spaces
def test_envpools_cxx_send_and_recv_are_where_abe_looks(caplog):
    import envpool

    pool = envpool.make("Pendulum-v1", env_type="gymnasium", num_envs=2, num_threads=1, seed=0)
    direct = compat.EnvPoolDirectIO.of(pool)
    assert direct is not None, f"envpool {version('envpool')}: {caplog.text or 'its layout changed'}"
    pool.reset()
    direct.send(pool, np.zeros((2, 1), np.float32))
    obs, reward, terminated, truncated, _ = direct.recv(pool)
    assert obs.shape == (2, 3) and reward.shape == (2,) and terminated.dtype == bool and truncated.dtype == bool


def test_a_pool_without_the_private_calls_falls_back_loudly(caplog):
    class PublicOnly:  # what a future EnvPool without _spec/_send/_recv would look like
        config: dict = {}  # noqa: RUF012

    assert compat.EnvPoolDirectIO.of(PublicOnly()) is None
    assert "stepping through its public send/recv (same numbers, slower)" in caplog.text


def test_a_run_on_the_fallback_says_so_in_its_tags(monkeypatch):
    from abe.envs.envpool import EnvPoolVectorEnv

    assert EnvPoolVectorEnv("Pendulum-v1", 2, 1, {}).stepping == "envpool: direct C++ send/recv"
    monkeypatch.setattr(compat.EnvPoolDirectIO, "of", staticmethod(lambda pool: None))
    envs = EnvPoolVectorEnv("Pendulum-v1", 2, 1, {})
    assert envs.stepping == "envpool: public send/recv"  # the tag SteppingTag puts on the run
    envs.reset(seed=0)
    envs.send(0, np.zeros((1, 1), np.float32))
    assert envs.recv(0)[0].shape == (1, 3)  # and it steps


def pendulum_agent(make_cfg):
    from abe.agent.agent import build_agent
    from abe.envs.vector import make_vector_env

    envs = make_vector_env("Pendulum-v1", 1)
    cfg = make_cfg("env=pendulum", "logger=none")
    try:
        return build_agent(cfg, envs.single_observation_space, envs.single_action_space)
    finally:
        envs.close()


def test_tianshous_algorithm_still_holds_a_torch_optimizer(make_cfg):
    agent = pendulum_agent(make_cfg)
    optimizer = compat.torch_optimizer(agent.algorithm)
    assert isinstance(optimizer, torch.optim.Optimizer), f"tianshou {version('tianshou')}"
    assert {id(p) for g in optimizer.param_groups for p in g["params"]} == {id(p) for p in agent.algorithm.parameters()}


def test_a_missing_optimizer_names_tianshou():
    with pytest.raises(compat.DependencyChanged, match=r"^tianshou \S+: Algorithm.optim._optim"):
        compat.torch_optimizer(object())


def test_abes_return_scaling_epsilon_is_tianshous(make_cfg):
    from abe.agent.update import RETURN_EPS

    agent = pendulum_agent(make_cfg)
    assert agent.algorithm._eps == RETURN_EPS, f"tianshou {version('tianshou')} changed A2C's return-scaling epsilon"


def test_hydras_argument_parser_reads_run_py_flags():
    args = compat.hydra_args_parser().parse_args(["-m", "--cfg", "job", "lr=1e-3"])
    parsed = (args.multirun, args.cfg, args.overrides)
    assert parsed == (True, "job", ["lr=1e-3"]), f"hydra-core {version('hydra-core')}"
