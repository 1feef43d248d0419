"""`python run.py` end to end: outputs on disk and the MLflow run they belong to."""

import json
import time

import mlflow
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from tests.conftest import TINY, run_cli, run_module

RESULT_FIELDS = {"eval/return_mean", "eval/return_std", "env_steps", "wall_time_s", "fps", "mlflow_run_id"}


def test_run_writes_result_config_checkpoint_and_curve(tracked_run):
    proc, run_dir, _ = tracked_run
    result = json.loads((run_dir / "result.json").read_text())
    assert result.keys() >= RESULT_FIELDS
    assert result["env_steps"] == 256 and result["eval/return_mean"] < 0  # Pendulum returns are negative
    saved = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    assert (saved.lr, saved.gamma, saved.env.id) == (3e-4, 0.95, "Pendulum-v1")
    assert (run_dir / "checkpoints" / "last.pt").stat().st_size > 0
    assert (run_dir / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # what the user sees: the network table first, then the one-screen summary
    out = proc.stdout
    assert out.index("total parameters:") < out.index("Pendulum-v1 finished: eval return")
    assert f"mlflow run  {result['mlflow_run_id']}" in out
    assert "Traceback" not in proc.stderr


def test_mlflow_run_has_params_metrics_artifacts_and_a_loadable_model(tracked_run, monkeypatch):
    _, run_dir, store = tracked_run
    result = json.loads((run_dir / "result.json").read_text())
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store / 'mlflow.db'}")  # restored after the test
    mlflow.set_tracking_uri(f"sqlite:///{store / 'mlflow.db'}")
    run = mlflow.get_run(result["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["lr"] == "0.0003" and run.data.params["gamma"] == "0.95"
    assert run.data.params["network.width"] == "64" and run.data.params["env.id"] == "Pendulum-v1"
    assert run.data.metrics["eval/return_mean"] == pytest.approx(result["eval/return_mean"])
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "eval/return_mean")
    assert [m.step for m in history] == [128, 256]
    assert run.data.tags["run_dir"] == str(run_dir.resolve()) and run.data.tags["git_commit"]
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)}
    assert {"result.json", "learning_curve.png", "hydra", "checkpoints"} <= artifacts
    model = mlflow.pytorch.load_model(f"runs:/{run.info.run_id}/model")
    obs = np.array([[1.0, 0.0, 0.5], [-0.3, 0.9, -4.0]], dtype=np.float32)  # raw observations
    with torch.no_grad():
        action = model(torch.from_numpy(obs)).numpy()
    assert action.shape == (2, 1) and np.all(np.abs(action) <= 2.0)  # Pendulum's bounds


def test_unreachable_tracking_server_fails_fast_with_one_line(tmp_path):
    start = time.monotonic()
    proc = run_cli(
        "env=pendulum",
        *TINY[:-1],
        "logger=mlflow",
        "logger.tracking_uri=http://127.0.0.1:9",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert proc.returncode == 2 and time.monotonic() - start < 60
    assert proc.stderr.startswith("error: logger.tracking_uri: no MLflow server answers at http://127.0.0.1:9")
    assert "Traceback" not in proc.stderr and not (tmp_path / "run").exists()


def test_rerun_from_the_saved_config_reproduces_the_returns(tracked_run, tmp_path):
    _, run_dir, _ = tracked_run
    proc = run_cli(
        "--config-path",
        str(run_dir / ".hydra"),
        "--config-name",
        "rerun",
        "logger.name=none",
        f"hydra.run.dir={tmp_path / 'again'}",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    original = json.loads((run_dir / "result.json").read_text())["evaluations"]
    again = json.loads((tmp_path / "again" / "result.json").read_text())["evaluations"]
    assert [e["eval/return_mean"] for e in again] == [e["eval/return_mean"] for e in original]


def test_a_rerun_from_a_saved_config_keeps_abes_run_dirs_and_log_format(tracked_run):
    # Hydra alone re-runs a saved config.yaml in `outputs/<date>/<time>/` with its
    # [time][module] log lines; rerun.yaml beside it adds abe's settings and open mappings.
    _, run_dir, _ = tracked_run
    rerun = ["--config-path", str(run_dir / ".hydra"), "--config-name", "rerun"]
    proc = run_cli(*rerun, "env.kwargs.g=9.0", "--cfg", "all")
    assert proc.returncode == 0, proc.stderr[-2000:]
    printed = OmegaConf.create(proc.stdout)
    hydra = printed.hydra
    assert OmegaConf.to_container(hydra.run)["dir"] == "outputs/runs/${now:%Y-%m-%d}/${now:%H-%M-%S}_${env.id}"
    assert hydra.job_logging.formatters.console.format == "%(message)s"
    assert "mlflow_sweep" in hydra.callbacks
    saved = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    assert printed.env.kwargs == {**saved.env.kwargs, "g": 9.0}
    assert OmegaConf.masked_copy(printed, [k for k in saved if k != "env"]) == OmegaConf.masked_copy(
        saved, [k for k in saved if k != "env"]
    )


def test_group_override_on_a_saved_config_is_explained(tracked_run):
    _, run_dir, _ = tracked_run
    proc = run_cli("--config-path", str(run_dir / ".hydra"), "--config-name", "rerun", "logger=none")
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: logger: got 'none' instead of a section of keys")


def test_n_seeds_trains_the_seeds_together_and_returns_their_statistic(tmp_path, monkeypatch):
    store = tmp_path / "store"
    overrides = [o for o in TINY if not o.startswith("logger")]
    proc = run_cli(
        "env=pendulum",
        "seed=5",
        "n_seeds=2",
        "seed_statistic=mean",
        *overrides,
        f"logger.store_dir={store}",
        f"hydra.run.dir={tmp_path / 'run'}",
        env={"MLFLOW_TRACKING_URI": ""},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((tmp_path / "run" / "result.json").read_text())
    per_seed = [json.loads((tmp_path / "run" / f"seed_{s}" / "result.json").read_text()) for s in (5, 6)]
    assert summary["seeds"] == [5, 6] and [r["seed"] for r in per_seed] == [5, 6]
    assert summary["per_seed"] == [r["eval/return_mean"] for r in per_seed]
    assert summary["objective"] == summary["eval/return_mean"] == pytest.approx(sum(summary["per_seed"]) / 2)
    assert summary["statistic"] == "mean" and summary["ci95"][0] <= summary["objective"] <= summary["ci95"][1]
    assert OmegaConf.load(tmp_path / "run" / "seed_6" / ".hydra" / "config.yaml").seed == 6
    assert "2 seeds: mean" in proc.stdout + proc.stderr
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store / 'mlflow.db'}")  # restored after the test
    mlflow.set_tracking_uri(f"sqlite:///{store / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["Pendulum-v1"])
    [job] = [r for _, r in runs.iterrows() if r["params.n_seeds"] == "2"]
    seeds = runs[runs["tags.mlflow.parentRunId"] == job["run_id"]]
    assert sorted(seeds["params.seed"]) == ["5", "6"] and set(seeds["status"]) == {"FINISHED"}
    assert job["run_id"] == summary["mlflow_run_id"] and job["status"] == "FINISHED"
    assert job["metrics.objective"] == pytest.approx(summary["objective"])
    proc = run_module("reproduce", job["run_id"], "--tracking-uri", f"sqlite:///{store / 'mlflow.db'}")
    assert proc.returncode == 2 and proc.stderr == (
        f"error: run {job['run_id']} is the run of a 2-seed job; reproduce one of its seeds' runs "
        "(nested under it in the MLflow UI)\n"
    )
