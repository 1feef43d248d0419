"""`python -m abe evaluate` and `python -m abe reproduce` on runs made by `run.py`."""

import json
import os
import subprocess
import sys

import imageio.v2 as imageio
import mlflow
import pytest
import torch

from abe import PROJECT_ROOT
from abe.agent.agent import build_agent
from abe.agent.checkpoint import load_into, read_checkpoint
from abe.commands.reproduce import load_saved_config, why_different
from abe.core.errors import ConfigError
from abe.envs.vector import make_vector_env
from tests.conftest import TINY, run_cli, run_module


def result_of(run_dir):
    return json.loads((run_dir / "result.json").read_text())


def test_evaluate_checkpoint_repeats_the_training_time_evaluation(tracked_run):
    _, run_dir, _ = tracked_run
    proc = run_module("evaluate", str(run_dir / "checkpoints" / "last.pt"), "--episodes", "2")
    assert proc.returncode == 0, proc.stderr
    result = result_of(run_dir)
    lines = proc.stdout.splitlines()
    assert lines[0].endswith("Pendulum-v1, 2 episodes, deterministic (mean action)")
    assert sum(line.startswith("  episode ") for line in lines) == 2
    assert lines[-1] == f"return: {result['eval/return_mean']:.1f} ± {result['eval/return_std']:.1f}"


@pytest.fixture(scope="module")
def cheetah_run(tmp_path_factory):
    """A tiny tracked HalfCheetah run on EnvPool (the default option's backend): its run dir."""
    root = tmp_path_factory.mktemp("cheetah")
    tiny = [o for o in TINY if not o.startswith("logger")]
    proc = run_cli(
        "env=halfcheetah",
        "env.backend=envpool",
        *tiny,
        f"hydra.run.dir={root / 'run'}",
        f"logger.store_dir={root / 'store'}",
        cwd=root,
        env={"MLFLOW_TRACKING_URI": ""},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root / "run"


def test_evaluate_repeats_an_envpool_runs_evaluation_on_envpool(cheetah_run, capsys, monkeypatch):
    # EnvPool's episodes differ from Gymnasium's for the same seed: evaluate builds the
    # run's own backend, so it repeats the run's final evaluation to the digit.
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # loading a checkpoint sets this process's
    code, out, err = in_process(
        capsys, monkeypatch, "evaluate", str(cheetah_run / "checkpoints" / "last.pt"), "--episodes", "2"
    )
    assert code == 0, err
    result = result_of(cheetah_run)
    assert out.splitlines()[-1] == f"return: {result['eval/return_mean']:.1f} ± {result['eval/return_std']:.1f}"
    # the run says which EnvPool path stepped it (the fast one, on the EnvPool the lock pins)
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{cheetah_run.parent / 'store' / 'mlflow.db'}")
    assert client.get_run(result["mlflow_run_id"]).data.tags["env.stepping"] == "envpool: direct C++ send/recv"


def test_video_without_an_opengl_library_is_one_line_naming_what_to_install(cheetah_run, monkeypatch, capsys):
    # A machine with command 1's setup alone has no libosmesa6: PyOpenGL finds no OSMesa.
    import ctypes.util

    from abe.commands.main import main

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("MUJOCO_GL", raising=False)
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # loading a checkpoint sets this process's
    assert main(["evaluate", str(cheetah_run / "checkpoints" / "last.pt"), "--video"]) == 2
    out, err = capsys.readouterr()
    assert err == (
        "error: --video: MuJoCo draws with osmesa (MUJOCO_GL) here and libOSMesa is not installed; install it "
        "(Debian/Ubuntu: sudo apt-get install libosmesa6) or set MUJOCO_GL to a backend this machine has\n"
    )
    assert "episode" not in out and not list(cheetah_run.glob("video-*"))  # asked before any episode ran


def test_evaluate_run_id_records_a_real_video_and_logs_it(tracked_run):
    _, run_dir, store = tracked_run
    run_id = result_of(run_dir)["mlflow_run_id"]
    proc = run_module(
        "evaluate",
        run_id,
        "--episodes",
        "1",
        "--video",
        "--stochastic",
        "--tracking-uri",
        f"sqlite:///{store / 'mlflow.db'}",
    )
    assert proc.returncode == 0, proc.stderr
    [line] = [line for line in proc.stdout.splitlines() if line.startswith("video: ")]
    video = run_dir / line.split()[1].rsplit("/", 1)[1]
    assert line.startswith(f"video: {run_dir}/video-Pendulum-v1-") and "(201 frames" in line  # next to the run
    reader = imageio.get_reader(video)
    frames = [frame for frame in reader]
    assert len(frames) == 201 and frames[0].shape == (500, 500, 3)  # reset + 200 steps
    assert 0 < frames[100].mean() < 255  # a picture, not a blank
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    assert [a.path for a in client.list_artifacts(run_id, "videos")] == [f"videos/{video.name}"]


def test_evaluate_mlflow_model_uri(tracked_run, capsys, monkeypatch):
    _, run_dir, store = tracked_run
    run_id = result_of(run_dir)["mlflow_run_id"]
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # loading a model sets this process's
    uri = f"sqlite:///{store / 'mlflow.db'}"
    code, out, err = in_process(
        capsys, monkeypatch, "evaluate", f"runs:/{run_id}/model", "--episodes", "2", "--tracking-uri", uri
    )
    assert code == 0, err
    assert out.startswith(f"MLflow model runs:/{run_id}/model: Pendulum-v1, 2 episodes")
    # The exported model normalises in float32: close to, not bit-equal with, the agent.
    final = float(out.splitlines()[-1].split()[1])
    assert final == pytest.approx(result_of(run_dir)["eval/return_mean"], rel=0.05)


def in_process(capsys, monkeypatch, *args: str) -> tuple[int, str, str]:
    """`python -m abe ARGS` in this process, for what a subprocess adds nothing to (exit
    code and message); a subprocess for each command still proves the whole path."""
    from abe.commands.main import main

    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"):  # set by the command
        monkeypatch.setenv(name, os.environ.get(name, ""))
        if not os.environ[name]:
            monkeypatch.delenv(name)
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


MISSING_RUN = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    "args,message",
    [
        (
            ["evaluate", "no/such/checkpoint.pt"],
            "source: 'no/such/checkpoint.pt' is not a checkpoint file, an MLflow run id",
        ),
        (["evaluate", str(PROJECT_ROOT / "README.md")], f"checkpoint: '{PROJECT_ROOT / 'README.md'}' is not an abe"),
        (["evaluate", MISSING_RUN], f"run id: no run '{MISSING_RUN}' in sqlite:///"),
        (["evaluate", "x.pt", "--episodes", "0"], "--episodes: got 0; allowed: an integer >= 1"),
    ],
)
def test_bad_sources_are_one_line(tracked_run, args, message, capsys, monkeypatch):
    _, _, store = tracked_run
    code, _, err = in_process(capsys, monkeypatch, *args, "--tracking-uri", f"sqlite:///{store / 'mlflow.db'}")
    assert code == 2 and err.startswith("error: " + message) and err.count("\n") == 1, err


def test_a_missing_run_is_one_line_from_the_command_line(tracked_run):
    _, _, store = tracked_run
    proc = run_module("reproduce", MISSING_RUN, "--tracking-uri", f"sqlite:///{store / 'mlflow.db'}")
    assert proc.returncode == 2
    assert proc.stderr == f"error: run id: no run '{MISSING_RUN}' in sqlite:///{store / 'mlflow.db'}\n"


def test_reproduce_needs_a_saved_config(tracked_run, capsys, monkeypatch):
    _, _, store = tracked_run
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    bare = client.create_run(client.get_experiment_by_name("Pendulum-v1").experiment_id)
    client.set_terminated(bare.info.run_id)
    uri = f"sqlite:///{store / 'mlflow.db'}"
    code, _, err = in_process(capsys, monkeypatch, "reproduce", bare.info.run_id, "--tracking-uri", uri)
    assert code == 2
    assert err == f"error: run {bare.info.run_id} has no saved config (artifact 'hydra/config.yaml')\n"


def test_reproduce_matches_exactly_and_tags_the_new_run(tracked_run):
    _, run_dir, store = tracked_run
    run_id = result_of(run_dir)["mlflow_run_id"]
    proc = run_module(
        "reproduce", run_id, "trainer.progress_bar=false", "--tracking-uri", f"sqlite:///{store / 'mlflow.db'}"
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "reproduced exactly: 2/2 evaluations match" in proc.stdout
    new_id = proc.stdout.strip().splitlines()[-1].removeprefix("new run: ")
    new_run = mlflow.MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}").get_run(new_id)
    assert new_run.data.tags["reproduces"] == run_id and new_run.info.status == "FINISHED"
    assert new_run.data.tags["reproduction"].startswith("reproduced exactly")


HOSTILE_CONFIGS = [
    ("logger:\n  tags:\n    x: ${oc.env:ABE_TEST_SECRET}\n", "calls resolvers (logger.tags.x), which could read"),
    ("lr: 0.1\nnetwork:\n  width: ${oc.decode:'64'}\n", "calls resolvers (network.width), which could read"),
    ("logger:\n  run_name: a-${oc.env:ABE_TEST_SECRET}-b\n", "calls resolvers (logger.run_name), which could read"),
    ("env:\n  kwargs:\n    xml_file: /etc/passwd\n", "names files of this machine (env.kwargs.xml_file)"),
    ("lr: [1\n", "its saved config cannot be read: while parsing"),
]


def plant(tracked_run, tmp_path, text: str) -> tuple[mlflow.MlflowClient, str, str]:
    """(client, store URI, run id): a finished run in the tracked store whose saved config is `text`."""
    _, _, store = tracked_run
    uri = f"sqlite:///{store / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    planted = client.create_run(client.get_experiment_by_name("Pendulum-v1").experiment_id)
    (tmp_path / "config.yaml").write_text(text)
    client.log_artifact(planted.info.run_id, str(tmp_path / "config.yaml"), "hydra")
    client.set_terminated(planted.info.run_id)
    return client, uri, planted.info.run_id


def test_reproduce_refuses_a_planted_config_before_anything_runs(tracked_run, tmp_path):
    text, message = HOSTILE_CONFIGS[0]
    client, uri, run_id = plant(tracked_run, tmp_path, text)
    experiment_id = client.get_run(run_id).info.experiment_id
    runs_before = len(client.search_runs([experiment_id]))
    proc = run_module("reproduce", run_id, "--tracking-uri", uri, env={"ABE_TEST_SECRET": "s3cret"})
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(f"error: run {run_id}: its saved config ") and message in proc.stderr
    assert len(client.search_runs([experiment_id])) == runs_before  # nothing ran, nothing was logged
    assert "s3cret" not in proc.stdout + proc.stderr


@pytest.mark.parametrize("text,message", HOSTILE_CONFIGS[1:], ids=[m.split("(")[0] for _, m in HOSTILE_CONFIGS[1:]])
def test_every_kind_of_planted_config_is_refused_in_one_line(text, message, tracked_run, tmp_path, capsys, monkeypatch):
    _, uri, run_id = plant(tracked_run, tmp_path, text)
    monkeypatch.setenv("ABE_TEST_SECRET", "s3cret")
    code, out, err = in_process(capsys, monkeypatch, "reproduce", run_id, "--tracking-uri", uri)
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith(f"error: run {run_id}: its saved config ") and message in err
    assert "s3cret" not in out + err


def test_saved_config_that_could_run_code_is_refused(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("lr: 0.1\nnetwork:\n  _target_: os.system\n  _args_: ['echo pwned']\n")
    with pytest.raises(ConfigError, match=r"keys abe does not use \(network._target_, network._args_\)"):
        load_saved_config(path, "abc")
    path.write_text("lr: 0.1\nhydra:\n  callbacks: {}\n")
    with pytest.raises(ConfigError, match=r"\(hydra\)"):
        load_saved_config(path, "abc")


def test_a_mismatch_names_what_decides_float_rounding(tracked_run):
    _, run_dir, store = tracked_run
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    here = client.get_run(result_of(run_dir)["mlflow_run_id"]).data.tags  # what a real run recorded
    assert here["machine.simd"] in ("avx512f", "avx2", "avx", "sse4_2", "asimd", "neon")
    assert here["machine.cpu"] and here["machine.torch_cpu_capability"] and here["versions.torch"]
    assert here["machine.cpu_count"] == str(os.cpu_count())
    simd = "neon" if here["machine.simd"] != "neon" else "avx2"  # another CPU type than this one
    other = {**here, "machine.simd": simd, "versions.torch": "0.0"}
    assert why_different(here, other) == (
        f"the machine or versions differ: machine.simd {here['machine.simd']} -> {simd}, versions.torch "
        f"{here['versions.torch']} -> 0.0 (float rounding differs between CPU types and versions; abe reproduces "
        "bit for bit on the same machine type with the same versions)"
    )
    assert why_different(here, dict(here)) == (
        "same machine type, versions and device: this should not happen; please report it"
    )


def test_checkpoint_of_another_shape_names_both_shapes(tracked_run, make_cfg):
    _, run_dir, _ = tracked_run
    state = read_checkpoint(run_dir / "checkpoints" / "last.pt")
    envs = make_vector_env("Pendulum-v1", 1)
    agent = build_agent(
        make_cfg("env=pendulum", "network.width=32"), envs.single_observation_space, envs.single_action_space
    )
    envs.close()
    with pytest.raises(ConfigError, match=r"torch.Size\(\[64, \d\]\) from checkpoint.*torch.Size\(\[32, \d\]\)"):
        load_into(agent, state)


def test_mujoco_video_renders_headless(tmp_path):
    # MuJoCo draws through OSMesa when there is no display (Debian libosmesa6). In a
    # process of its own: choosing the GL backend sets MUJOCO_GL for the whole process.
    path = tmp_path / "v.mp4"
    script = (
        "from abe.envs.vector import make_vector_env\n"
        "from abe.training.evaluation import record_video\n"
        "from tests.conftest import random_policy\n"
        "envs = make_vector_env('InvertedPendulum-v5', 1)\n"
        f"_, frames, _ = record_video(random_policy(envs, 0), 'InvertedPendulum-v5', {{}}, 0, Path({str(path)!r}))\n"
        "print(frames)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", "from pathlib import Path\n" + script],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "DISPLAY"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    frames = int(proc.stdout.split()[-1])
    decoded = [frame for frame in imageio.get_reader(path)]  # len() of a reader is inf
    assert len(decoded) == frames > 1 and decoded[0].shape == (480, 480, 3)
    assert decoded[-1].std() > 5  # a rendered scene, not a flat colour


def test_the_video_camera_follows_a_running_agent():
    # HalfCheetah put 30 m ahead of its start: the env's own camera shows only the floor,
    # abe's follows the torso. The cheetah's orange and pink bodies are the only pixels
    # far redder than green (the floor is black and pale green). Own process: MUJOCO_GL.
    script = (
        "import gymnasium as gym\n"
        "from abe.envs.mujoco import make_render_env\n"
        "def agent_pixels(env):\n"
        "    env.reset(seed=0)\n"
        "    env.render()\n"  # as a video does: the first frame places the camera
        "    u = env.unwrapped\n"
        "    qpos, qvel = u.data.qpos.copy(), u.data.qvel.copy()\n"
        "    qpos[0] += 30.0\n"
        "    u.set_state(qpos, qvel)\n"
        "    frame = env.render().astype(int)\n"
        "    env.close()\n"
        "    return ((frame[..., 0] - frame[..., 1]) > 40).mean()\n"
        "print(agent_pixels(make_render_env('HalfCheetah-v5', {})), agent_pixels(make_render_env('Hopper-v5', {})))\n"
        "print(agent_pixels(gym.make('HalfCheetah-v5', render_mode='rgb_array')))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "DISPLAY"} | {"MUJOCO_GL": "osmesa"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    followed, unfollowed = proc.stdout.splitlines()[-2:]
    cheetah, hopper = map(float, followed.split())
    assert cheetah > 0.003 and hopper > 0.003, followed  # the agent fills part of the frame
    assert float(unfollowed) < 0.0003, unfollowed  # the env's own camera has lost it: what the test guards against
