"""`python -m abe COMMAND`: work with trained runs.

python -m abe evaluate SOURCE [--episodes N] [--video] [--stochastic]
python -m abe reproduce RUN_ID [overrides ...]
python -m abe resume RUN_DIR_OR_ID
python -m abe sync RUN_DIR ... | --all
"""

from __future__ import annotations

import argparse
import sys
import time

from abe.core.errors import ConfigError


def evaluate_command(args: argparse.Namespace) -> int:
    from abe.commands.sources import load_source

    source = load_source(args.source, args.tracking_uri)  # a bad source is answered before torch loads
    from abe.envs.vector import eval_backend, make_vector_env
    from abe.training.evaluation import record_video, run_episodes

    if args.video:
        from abe.envs.mujoco import check_can_render

        check_can_render(source.env_id)  # before the episodes, not after them
    policy = source.policy(deterministic=not args.stochastic)
    mode = "stochastic (sampled actions)" if args.stochastic else "deterministic (mean action)"
    print(f"{source.description}: {source.env_id}, {args.episodes} episodes, {mode}")
    envs = make_vector_env(
        source.env_id, args.episodes, eval_backend(source.backend), source.env_kwargs, source.threads
    )
    try:
        returns = run_episodes(policy, envs, source.seed)
    finally:
        envs.close()
    for i, value in enumerate(returns):
        print(f"  episode {i}: {value:10.1f}")
    print(f"return: {returns.mean():.1f} ± {returns.std():.1f}")
    if args.video:
        path = source.video_dir / f"video-{source.env_id}-{time.strftime('%Y%m%d-%H%M%S')}.mp4"
        path, frames, total = record_video(policy, source.env_id, source.env_kwargs, source.seed, path)
        print(f"video: {path} ({frames} frames, episode return {total:.1f})")
        if source.run_id:
            import mlflow

            mlflow.MlflowClient().log_artifact(source.run_id, str(path), artifact_path="videos")
            print(f"video logged to MLflow run {source.run_id} (artifacts/videos)")
    return 0


def reproduce_command(args: argparse.Namespace) -> int:
    from abe.commands.reproduce import reproduce

    return reproduce(args.run_id, args.overrides, args.tracking_uri)


def resume_command(args: argparse.Namespace) -> int:
    from abe.commands.resume import resume

    return resume(args.target, args.tracking_uri)


def sync_command(args: argparse.Namespace) -> int:
    from pathlib import Path

    from abe.commands.sync import sync

    if bool(args.run_dirs) == args.all:
        raise ConfigError("sync: name run dirs, or --all for every kept run under outputs/")
    return sync([Path("outputs")] if args.all else [Path(d) for d in args.run_dirs])


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="python -m abe", description=__doc__.splitlines()[0])
    commands = main.add_subparsers(dest="command", required=True)

    evaluate = commands.add_parser("evaluate", help="run a trained policy for N episodes, optionally record a video")
    evaluate.add_argument("source", help="checkpoint path, MLflow run id, or models:/NAME/VERSION or runs:/ID/model")
    evaluate.add_argument("--episodes", type=int, default=10)
    evaluate.add_argument("--video", action="store_true", help="record the first episode as an MP4")
    group = evaluate.add_mutually_exclusive_group()
    group.add_argument("--deterministic", dest="stochastic", action="store_false", help="mean action (default)")
    group.add_argument("--stochastic", dest="stochastic", action="store_true", help="sample actions")
    evaluate.add_argument("--tracking-uri", default=None, help="default: $MLFLOW_TRACKING_URI or outputs/mlflow")
    evaluate.set_defaults(run=evaluate_command, stochastic=False)

    reproduce = commands.add_parser("reproduce", help="re-run an MLflow run from its saved config and compare")
    reproduce.add_argument("run_id")
    reproduce.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. trainer.total_steps=20000")
    reproduce.add_argument("--tracking-uri", default=None, help="default: $MLFLOW_TRACKING_URI or outputs/mlflow")
    reproduce.set_defaults(run=reproduce_command)

    resume = commands.add_parser("resume", help="continue an interrupted run from its last checkpoint")
    resume.add_argument("target", metavar="RUN_DIR_OR_ID", help="a Hydra run dir or an MLflow run id")
    resume.add_argument(
        "--tracking-uri", default=None, help="default: the run's own, $MLFLOW_TRACKING_URI or outputs/mlflow"
    )
    resume.set_defaults(run=resume_command)

    sync = commands.add_parser("sync", help="complete in its store a run whose tracking server was lost")
    sync.add_argument("run_dirs", nargs="*", metavar="RUN_DIR", help="run dirs (or folders of them) with kept runs")
    sync.add_argument("--all", action="store_true", help="every kept run under outputs/")
    sync.set_defaults(run=sync_command)
    return main


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if getattr(args, "episodes", 1) < 1:
        print(f"error: --episodes: got {args.episodes}; allowed: an integer >= 1", file=sys.stderr)
        return 2
    try:
        return args.run(args)
    except ConfigError as ex:
        print(f"error: {ex}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
