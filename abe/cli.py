"""What `run.py` does around training: check the command line before Hydra makes a
run dir, turn bad input into one line and exit code 2, write result.json, print the
end-of-run summary."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import sys
import threading
import warnings
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from abe import CONFIG_DIR
from abe.config import explain_hydra_error, unknown_key, validate
from abe.errors import ConfigError

log = logging.getLogger("abe")

EXIT_BAD_INPUT = 2
EXIT_TRAINING_FAILED = 1


def fail(message: str) -> None:
    """Report bad input as one line on stderr and exit without a traceback."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(EXIT_BAD_INPUT)


def compose(overrides: list[str], config_dir: Path = CONFIG_DIR, config_name: str = "config",
            with_hydra: bool = False) -> DictConfig:
    """The job config Hydra would build for these overrides (no run dir, no side effects)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(config_dir.resolve())):
        return hydra_compose(config_name=config_name, overrides=overrides, return_hydra_config=with_hydra)


def _plain_overrides(overrides: list[str], multirun: bool) -> list[str]:
    """Overrides that name a single value: all of them for a run; for a sweep, those
    that are not swept (each swept value is checked by its own job)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)  # raises on bad syntax
    if not multirun:
        return overrides
    return [o.input_line for o in parsed if not o.is_sweep_override() and not o.is_hydra_override()]


def check_command_line(argv: list[str] | None = None) -> DictConfig | None:
    """Compose and validate the config of `run.py`'s command line before Hydra runs.

    Bad input then fails before any run dir, MLflow run or checkpoint exists. Returns
    the config of a single run (None for a sweep or --help).
    """
    from hydra._internal.utils import get_args_parser

    args, _ = get_args_parser().parse_known_args(sys.argv[1:] if argv is None else argv)
    if args.help or args.hydra_help or args.shell_completion or args.info:
        return None
    config_dir = Path(args.config_dir or args.config_path or CONFIG_DIR)
    try:
        overrides = _plain_overrides(args.overrides, args.multirun)
        cfg = compose(overrides, config_dir, args.config_name or "config")
        validate(cfg)
        if args.multirun:
            _check_sweeper(args.overrides, config_dir, args.config_name or "config")
    except ConfigError as ex:
        fail(str(ex))
    except (HydraException, OmegaConfBaseException) as ex:
        fail(explain_hydra_error(ex, _config_without(unknown_key(ex), args, config_dir)))
    return None if args.multirun else cfg


def _check_sweeper(overrides: list[str], config_dir: Path, config_name: str) -> None:
    """abe's Optuna sweeper options, checked before Hydra opens the sweep's MLflow parent run."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    sweeper = compose(fixed, config_dir, config_name, with_hydra=True).hydra.sweeper
    if sweeper.get("_target_") == "abe.optuna_sweeper.AbeOptunaSweeper":
        from abe.optuna_sweeper import check_options

        check_options(sweeper.pruner, sweeper.pruner_warmup, sweeper.pruner_keep, sweeper.prune_on)


def _config_without(key: str | None, args, config_dir: Path) -> DictConfig | None:
    """The config composed without the override of an unknown key (to list the real keys)."""
    if key is None:
        return None
    rest = [o for o in args.overrides if o.split("=", 1)[0].lstrip("+~") != key and "=" in o]
    try:
        return compose(_plain_overrides(rest, args.multirun), config_dir, args.config_name or "config")
    except (HydraException, OmegaConfBaseException):
        return None


def _terminate_as_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run_job(cfg: DictConfig) -> float:
    """One training job inside Hydra: validate, track, train, write result.json.

    With `n_seeds` > 1 the job trains seeds seed, seed+1, ... one after another (each
    in `seed_<n>/` with its own MLflow run) and returns the mean of their final eval
    returns, so a sweep tunes for values that hold up on new seeds.
    """
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    if "n_seeds" not in cfg:  # a config saved before the key existed (abe.config.ADDED_LATER)
        with open_dict(cfg):
            cfg.n_seeds = 1
    try:
        validate(cfg)
    except ConfigError as ex:
        fail(str(ex))
    reporter = None
    if hydra_cfg.mode == RunMode.MULTIRUN:
        from abe.optuna_sweeper import TrialReporter

        reporter = TrialReporter.for_this_job(cfg.trainer.total_steps)  # set when the Optuna sweeper runs this job
    if cfg.n_seeds == 1:
        return _run_seed(cfg, run_dir, reporter)
    values = []
    for seed in range(cfg.seed, cfg.seed + cfg.n_seeds):
        seed_cfg = cfg.copy()
        seed_cfg.seed, seed_cfg.n_seeds = seed, 1
        seed_dir = run_dir / f"seed_{seed}"
        (seed_dir / ".hydra").mkdir(parents=True, exist_ok=True)
        OmegaConf.save(seed_cfg, seed_dir / ".hydra" / "config.yaml", resolve=True)  # re-runnable alone
        # Only the first seed reports to the pruner: later seeds would restart its steps.
        values.append(_run_seed(seed_cfg, seed_dir, reporter if seed == cfg.seed else None))
        if reporter is not None and reporter.pruned:
            return values[0]
    mean = float(sum(values) / len(values))
    summary_path = run_dir / "result.json"
    summary_path.write_text(json.dumps({"eval/return_mean": mean, "seeds": list(range(cfg.seed, cfg.seed + cfg.n_seeds)),
                                        "per_seed": values}, indent=2) + "\n")
    log.info("mean over %d seeds: %.1f (%s)", cfg.n_seeds, mean, ", ".join(f"{v:.1f}" for v in values))
    return mean


def _run_seed(cfg: DictConfig, run_dir: Path, reporter) -> float:
    from abe.sweeping import parent_run_id
    from abe.tracking import make_tracker
    from abe.training import EarlyStop

    hydra_cfg = HydraConfig.get()
    try:
        parent = parent_run_id(hydra_cfg.sweep.dir) if hydra_cfg.mode == RunMode.MULTIRUN else None
        tracker = make_tracker(cfg, run_dir, list(hydra_cfg.overrides.task), parent)
    except ConfigError as ex:
        fail(str(ex))
    try:
        return execute(cfg, run_dir, tracker, on_eval=reporter.report if reporter else None)["eval/return_mean"]
    except ConfigError as ex:  # the tracking store failed the run after it started
        fail(str(ex))
    except EarlyStop:
        reporter.mark_pruned()
        return reporter.last_value


def execute(cfg: DictConfig, run_dir: Path, tracker, resume: dict | None = None, on_eval=None) -> dict:
    """Train (or resume), write result.json and the learning curve, end the tracked run
    with its status, print the summary.

    In a sweep (Hydra multirun) a failed run raises, so the sweeper records the trial
    as failed and goes on; a single run reports the failure as one line.
    """
    from abe.plots import learning_curve
    from abe.training import EarlyStop, TrainingDiverged, train, write_result

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate_as_interrupt)  # SIGTERM ends the run as KILLED
    result, status, error = None, "FAILED", None
    try:
        result = train(cfg, run_dir, tracker, resume, on_eval)
        result["mlflow_run_id"] = tracker.run_id
        learning_curve(result["evaluations"], f"{cfg.env.id}, seed {cfg.seed}", run_dir / "learning_curve.png")
        write_result(result, run_dir)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    except EarlyStop as ex:
        status = "KILLED"
        tracker.set_tags({"optuna_state": "PRUNED", "stopped_early": str(ex)})
        log.info("%s: %s", cfg.env.id, ex)
        raise
    except TrainingDiverged as ex:
        error = str(ex)
        print(f"error: {ex}", file=sys.stderr)
        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
            raise
        raise SystemExit(EXIT_TRAINING_FAILED) from None
    except Exception as ex:
        error = f"{type(ex).__name__}: {ex}"
        raise
    finally:
        tracker.finish(result, run_dir, status, error)
    log.info(summary(result, run_dir, cfg))
    return result


# Hydra 1.4 instantiates `hydra.callbacks` without an execution whitelist and warns
# about every target. abe's config names one, its own; other targets still warn.
# PYTHONWARNINGS carries the filter into joblib worker processes.
_OWN_CALLBACK_WARNING = "hydra.utils.instantiate() resolved _target_='abe.sweeping.MlflowSweepCallback'"


def _trust_own_callback() -> None:
    warnings.filterwarnings("ignore", message=re.escape(_OWN_CALLBACK_WARNING))
    extra = f"ignore:{_OWN_CALLBACK_WARNING}"
    current = os.environ.get("PYTHONWARNINGS")
    os.environ["PYTHONWARNINGS"] = f"{current},{extra}" if current else extra


_SEARCH_SPACE_ARG = re.compile(r"^hydra\.sweeper\.params\.(?P<key>[\w.]+)=(?P<quote>['\"]?)(?P<value>.*)(?P=quote)$")


def search_space_args(argv: list[str]) -> list[str]:
    """`hydra.sweeper.params.network.width=choice(64,128)` -> `network.width=choice(64,128)`.

    Hydra refuses sweep syntax inside its own config, and `hydra.sweeper.params` cannot
    hold a dotted key from the command line; hydra-optuna-sweeper reads a sweep override
    of the key itself as the same search-space entry (command line over config)."""
    return [_SEARCH_SPACE_ARG.sub(r"\g<key>=\g<value>", arg) for arg in argv]


def launch(main) -> None:
    """`run.py`'s entry: check the command line, run Hydra, end quietly on Ctrl-C."""
    sys.argv = [sys.argv[0], *search_space_args(sys.argv[1:])]
    cfg = check_command_line()
    if cfg is not None and cfg.logger.name == "mlflow":
        from abe.tracking_helper import prewarm

        prewarm()  # MLflow imports in a helper process while this one starts training
    _trust_own_callback()
    try:
        main()
    except KeyboardInterrupt:
        from abe.sweeping import kill_unfinished_parents

        kill_unfinished_parents()
        print("interrupted: MLflow runs marked KILLED; the last checkpoint is kept", file=sys.stderr)
        raise SystemExit(130) from None


def _shown(path: Path) -> str:
    """A path relative to the working directory when it is inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def summary(result: dict, run_dir: Path, cfg: DictConfig) -> str:
    """The one-screen report printed at the end of a run."""
    evals = result["evaluations"]
    curve = "\n".join(
        f"  {e['env_steps']:>12,}  {e['eval/return_mean']:>10.1f} ± {e['eval/return_std']:<8.1f}"
        for e in evals
    )
    lines = [
        f"== {result['env_id']} finished: eval return {result['eval/return_mean']:.1f} "
        f"± {result['eval/return_std']:.1f} ({cfg.trainer.eval_episodes} episodes, mean action) ==",
        f"  {'env steps':>12}  {'eval return':>10}",
        curve,
        f"env steps   {result['env_steps']:,} in {result['wall_time_s']:.1f} s "
        f"({result['fps']:,.0f} steps/s, {result['updates']:,} updates)",
        f"run dir     {_shown(run_dir)}",
        f"result      {_shown(run_dir / 'result.json')}",
        f"checkpoint  {_shown(Path(result['checkpoint']))}",
    ]
    if result.get("mlflow_run_id"):
        lines.append(f"mlflow run  {result['mlflow_run_id']} ({cfg.logger.experiment})")
    return "\n".join(lines)
