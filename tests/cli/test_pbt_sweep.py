"""`python run.py -m hparams_search=pbt`: a population in one job, tracked like every
sweep, its best schedule replayed on held-out seeds; interrupted and resumed; bad input."""

import json
import shlex
import signal
import time
import warnings

import mlflow
import pytest
import yaml

from abe.commands.hydra_edge import check_command_line, compose, to_config
from tests.conftest import run_cli, run_module, start_cli

POPULATION = [
    "-m",
    "hparams_search=pbt",
    "env=pendulum",
    "trainer.num_envs=4",
    "trainer.eval_every=1024",
    "trainer.eval_episodes=2",
    "trainer.progress_bar=false",
    "hydra.sweeper.population=3",
    "hydra.sweeper.interval=1024",
]


def runs_of(store):
    warnings.filterwarnings("ignore", message=".*noload.*")
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("Pendulum-v1")
    return client, client.search_runs([experiment.experiment_id], max_results=1000)


def test_a_pbt_sweep_tracks_its_members_and_replays_the_best_schedule_on_held_out_seeds(tmp_path):
    store, sweep_dir = tmp_path / "store", tmp_path / "sweep"
    proc = run_cli(
        *POPULATION,
        "trainer.total_steps=4096",
        "hydra.sweeper.confirm_seeds=2",
        f"logger.store_dir={store}",
        f"hydra.sweep.dir={sweep_dir}",
        env={"MLFLOW_TRACKING_URI": ""},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    client, runs = runs_of(store)
    (parent,) = [r for r in runs if r.data.tags.get("abe.sweep") == "parent"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    (population,) = [c for c in children if "abe_confirmation" not in c.data.tags]
    (replay,) = [c for c in children if c.data.tags.get("abe_confirmation") == "1"]
    members = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == population.info.run_id]
    assert parent.info.status == "FINISHED" and all(r.info.status == "FINISHED" for r in runs)
    # one nested run per member, each with its own starting lr and gamma, logged over env steps
    assert len(members) == 3 and len({(m.data.params["lr"], m.data.params["gamma"]) for m in members}) == 3
    for member in members:
        gammas = client.get_metric_history(member.info.run_id, "train/gamma")
        assert [m.step for m in gammas] == [1024, 2048, 3072, 4096]
        assert len(client.get_metric_history(member.info.run_id, "train/lr")) == 4

    results = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    best = results["best_member"]
    member_results = [json.loads(p.read_text()) for p in sorted((sweep_dir / "0").glob("seed_*/result.json"))]
    assert best["final_eval_return"] == max(m["eval/return_mean"] for m in member_results)
    assert best["schedule"][0][0] == 0 and len(best["schedule"]) == len(best["lineage"]) + 1
    assert results["env_steps"] == 3 * 4096
    (row,) = results["confirmation"]
    assert row["seeds"] == [1000, 1001] and row["label"] == f"member seed {best['seed']}"
    replay_result = json.loads((sweep_dir / "1" / "result.json").read_text())
    assert replay_result["per_seed"] == pytest.approx(row["returns"], abs=1e-3)
    # the parent's headline is the replay on held-out seeds, with the population's plot
    assert parent.data.tags["best_run_id"] == replay.info.run_id and "member seed" in parent.data.tags["best_is"]
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"pbt_population.png", "optimization_results.yaml", "best_command.txt", "confirmation.md"} <= artifacts
    assert (sweep_dir / "pbt_population.png").stat().st_size > 10_000
    # best_command.txt re-trains the best member's schedule from its starting lr and gamma
    command = shlex.split((sweep_dir / "best_command.txt").read_text())
    assert command[:2] == ["python", "run.py"] and not any(a.startswith("hparams_search") for a in command)
    cfg = to_config(compose(command[2:]))
    assert [cfg.lr, cfg.gamma] == best["schedule"][0][1:] and cfg.schedule == best["schedule"][1:]
    assert cfg.pbt is None and cfg.n_seeds == 1


def test_an_interrupted_population_ends_its_runs_and_resumes_to_the_end(tmp_path):
    store, sweep_dir = tmp_path / "store", tmp_path / "sweep"
    command = [
        *POPULATION,
        "trainer.total_steps=6144",  # stopped after 1024 of them
        f"logger.store_dir={store}",
        f"hydra.sweep.dir={sweep_dir}",
    ]
    proc = start_cli(*command, env={"MLFLOW_TRACKING_URI": ""})
    job = sweep_dir / "0"
    deadline = time.monotonic() + 240
    while not (job / "seed_2" / "checkpoints" / "last.pt").exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()[-2000:] if proc.stderr else ""
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr[-2000:]
    _, runs = runs_of(store)
    assert runs and not [r for r in runs if r.info.status == "RUNNING"]
    resumed = run_module("resume", str(job), env={"MLFLOW_TRACKING_URI": ""})
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for seed in (0, 1, 2):
        result = json.loads((job / f"seed_{seed}" / "result.json").read_text())
        assert result["env_steps"] == 6144 and result["schedule"][0][0] == 0
    assert json.loads((job / "result.json").read_text())["seeds"] == [0, 1, 2]
    _, runs = runs_of(store)
    assert {r.info.status for r in runs if r.data.tags.get("abe.sweep") != "parent"} == {"FINISHED"}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("hydra.sweeper.population=1", "hydra.sweeper.population: got 1; allowed: an integer >= 2"),
        ("hydra.sweeper.quantile=0.7", "hydra.sweeper.quantile: got 0.7; allowed: a share in (0, 0.5]"),
        ("hydra.sweeper.interval=5000", "hydra.sweeper.interval: got 5,000; allowed: fewer env steps than"),
        ("network.width=choice(64,128)", "PBT changes lr and gamma during training, not network.width"),
        ("gamma=choice(0.9,1.5)", "gamma: got 1.5; allowed: a number in (0, 1]"),
        ("n_seeds=4", "n_seeds: got 4 with hparams_search=pbt, whose members are the seeds"),
    ],
)
def test_bad_pbt_input_is_one_line_before_anything_runs(tmp_path, override, message, capsys):
    argv = [*POPULATION, "trainer.total_steps=4096", override, f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    with pytest.raises(SystemExit) as exit_info:
        check_command_line(argv)  # what run.py runs before Hydra starts
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1 and err.startswith("error: ") and message in err
    assert not (tmp_path / "sweep").exists()


def test_bad_pbt_input_from_the_command_line(tmp_path):
    proc = run_cli(*POPULATION, "hydra.sweeper.population=1", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert proc.returncode == 2
    assert proc.stderr == "error: hydra.sweeper.population: got 1; allowed: an integer >= 2\n"
    assert not (tmp_path / "sweep").exists()


def test_a_population_that_diverges_is_one_line_and_every_run_failed_with_the_reason(tmp_path):
    store = tmp_path / "store"
    proc = run_cli(
        *POPULATION, "trainer.total_steps=4096", "hydra.sweeper.population=2", "hydra.sweeper.confirm_seeds=0",
        "lr=tag(log, interval(1e3, 1e5))", "optimizer=sgd", f"logger.store_dir={store}",
        f"hydra.sweep.dir={tmp_path / 'sweep'}", env={"MLFLOW_TRACKING_URI": ""},
    )  # fmt: skip
    assert proc.returncode == 1
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert line.startswith("error: training diverged at ") and "Traceback" not in proc.stderr
    assert "Error executing job" not in proc.stderr
    _, runs = runs_of(store)
    assert len(runs) == 4 and {r.info.status for r in runs} == {"FAILED"}  # parent, population, two members
    (parent,) = [r for r in runs if r.data.tags.get("abe.sweep") == "parent"]
    assert "the population failed: training diverged" in parent.data.tags["error"]
