"""Where Hydra meets abe: composing configs, checking a command line before Hydra makes
a run dir, and turning the raw DictConfig into abe's typed Config (the only place
that does). Hydra's composition errors become one line that names the key and what
is allowed."""

from __future__ import annotations

import copy
import re
import signal
import sys
from pathlib import Path

from hydra.core.config_store import ConfigStore
from hydra.errors import (
    ConfigCompositionException,
    HydraException,
    MissingConfigException,
    OverrideParseException,
)
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from abe import CONFIG_DIR
from abe.core.errors import ConfigError, first_line
from abe.core.schema import Config

EXIT_BAD_INPUT = 2

# Config keys whose value is an open mapping (gymnasium.make's keywords, extra MLflow
# tags): `env.kwargs.ctrl_cost_weight=0.05` adds a key, no `+` needed. Hydra's struct
# mode refuses a new key except under a node whose struct flag is off, and YAML cannot
# set a flag: conf/config.yaml's defaults list names this node, whose flags Hydra's merge
# keeps. Launchers hand the ConfigStore to their workers.
OPEN_MAPPINGS = ("env.kwargs", "logger.tags")


# A saved job config (RUN_DIR/.hydra/config.yaml) has none of abe's Hydra settings (run
# dirs under outputs/runs, the console format, the sweep callback): Hydra alone would
# re-run it in its own `outputs/<date>/<time>/`. Every run dir gets RERUN_CONFIG beside
# it, which composes the saved config onto them:
#   python run.py --config-path RUN_DIR/.hydra --config-name rerun
RERUN_CONFIG = "rerun"


def _store_nodes() -> None:
    """The configs that conf/config.yaml and every RERUN_CONFIG name in their defaults."""
    store = ConfigStore.instance()
    mappings = OmegaConf.create({})
    for key in OPEN_MAPPINGS:
        OmegaConf.update(mappings, key, {}, force_add=True)
        OmegaConf.set_struct(OmegaConf.select(mappings, key), False)
    store.store(name="abe_open_mappings", node=mappings, replace=True)  # again in a launcher worker
    store.store(name="abe_hydra", node={"hydra": OmegaConf.load(CONFIG_DIR / "config.yaml").hydra}, replace=True)


_store_nodes()


def write_rerun_config(folder: Path) -> None:
    """`folder`/rerun.yaml, beside the saved config.yaml it re-runs."""
    text = (
        f"# python run.py --config-path {folder} --config-name {RERUN_CONFIG}\n"
        "# re-runs config.yaml (this folder) with abe's Hydra settings (abe/commands/hydra_edge.py)\n"
        "defaults:\n  - config\n  - abe_open_mappings\n  - abe_hydra\n  - _self_\n"
    )
    (folder / f"{RERUN_CONFIG}.yaml").write_text(text)


def fail(message: str) -> None:
    """Report bad input as one line on stderr and exit without a traceback."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(EXIT_BAD_INPUT)


def compose(
    overrides: list[str], config_dir: Path = CONFIG_DIR, config_name: str = "config", with_hydra: bool = False
) -> DictConfig:
    """The job config Hydra would build for these overrides (no run dir, no side effects)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(config_dir.resolve())):
        return hydra_compose(config_name=config_name, overrides=overrides, return_hydra_config=with_hydra)


def to_config(cfg: DictConfig) -> Config:
    """The typed config of a composed (or saved) job config; ConfigError if a value is bad."""
    if not isinstance(cfg, DictConfig):
        raise ConfigError(f"expected a config of keys, got {type(cfg).__name__}")
    plain = OmegaConf.to_container(cfg, resolve=True)
    plain.pop("hydra", None)
    return Config.from_dict(plain)


def check_runtime(cfg: Config) -> None:
    """What the schema cannot know: the env exists and is continuous, the backend can
    build it with its kwargs, and a tracking URI the user named answers. Imports
    Gymnasium and MuJoCo."""
    from abe.tracking.store import check_tracking_uri, user_tracking_uri

    check_env(cfg)
    if cfg.logger.tracking and user_tracking_uri(cfg.logger):
        check_tracking_uri(user_tracking_uri(cfg.logger))


def check_env(cfg: Config) -> None:
    from abe.envs.checks import check_backend, check_env_id, check_env_kwargs

    check_env_id(cfg.env.id)
    check_env_kwargs(cfg.env.id, cfg.env.kwargs)
    check_backend(cfg.env.id, cfg.env.backend, cfg.env.kwargs)


def _not_swept(overrides: list[str]) -> list[str]:
    """A sweep's overrides that name a single value (each swept value is checked apart)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    return [o.input_line for o in parsed if not o.is_sweep_override() and not o.is_hydra_override()]


def check_command_line(argv: list[str] | None = None) -> Config | None:
    """Compose and check the config of `run.py`'s command line before Hydra runs.

    Bad input then fails before any run dir, MLflow run or checkpoint exists. Returns
    the config of a single run (None for a sweep, --help, or --cfg: a command that only
    prints the config gets its keys and values checked, not its env or its study).
    """
    from abe.core.compat import hydra_args_parser

    args, _ = hydra_args_parser().parse_known_args(search_space_args(sys.argv[1:] if argv is None else argv))
    if args.help or args.hydra_help or args.shell_completion or args.info:
        return None
    config_dir = Path(args.config_dir or args.config_path or CONFIG_DIR)
    config_name = args.config_name or "config"
    if args.cfg and args.multirun:
        fail(f"--cfg prints the config without running it: drop -m (python run.py ... --cfg {args.cfg})")
    search = [o for o in args.overrides if o.startswith("hparams_search=") and not o.endswith("=null")]
    if search and not args.multirun and not args.cfg:
        fail(
            f"{search[0]}: a search runs as a sweep: add -m (python run.py -m {search[0]} ...); without it "
            "one run would train with the default lr and gamma"
        )
    try:
        if args.multirun:  # one composition with the sweeper's settings gives the job's too
            cfg = _check_sweep(args.overrides, config_dir, config_name, joins_study=not args.cfg)
        else:
            cfg = to_config(compose(args.overrides, config_dir, config_name))
        if not args.cfg:
            check_runtime(cfg)  # builds the env: after the checks that need only the config
    except ConfigError as ex:
        fail(str(ex))
    except (HydraException, OmegaConfBaseException) as ex:
        fail(explain_hydra_error(ex, _config_without(unknown_key(ex), args, config_dir)))
    return None if args.multirun or args.cfg else cfg


# A sweep's values are checked one at a time against the fixed overrides, not as their
# product: a grid of 5 x 5 is 10 checks, not 25 (_with_value says what each costs).
MAX_CHECKED_SWEEP_VALUES = 200


def _check_sweep(overrides: list[str], config_dir: Path, config_name: str, joins_study: bool = True) -> Config:
    """A sweep's values and its sweeper's options, on one composition of its fixed overrides;
    whether the study it joins was made with the same settings, unless it only prints (--cfg).
    Returns the config of the fixed overrides."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    parsed = parser.parse_overrides(overrides)
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    composed = compose(fixed, config_dir, config_name, with_hydra=True)
    job = OmegaConf.masked_copy(composed, [key for key in composed if key != "hydra"])
    cfg = to_config(job)
    sweeps = [o for o in parsed if o.is_sweep_override() and not o.is_hydra_override()]
    params = composed.hydra.sweeper.get("params") or {}
    _check_sweep_values(parser, sweeps, fixed, params, job, config_dir, config_name)
    _check_sweeper(overrides, composed, joins_study)
    return cfg


def _check_sweep_values(
    parser, sweeps: list, fixed: list[str], params, job: DictConfig, config_dir: Path, config_name: str
) -> None:
    """Every value of every grid, and both bounds of every search interval (command line
    and `hydra.sweeper.params`), passes the checks of a single run before anything runs."""
    on_command_line = {o.key_or_group for o in sweeps}
    sweeps += [parser.parse_override(f"{key}={value}") for key, value in params.items() if key not in on_command_line]
    candidates = [(o, c) for o in sweeps for c in sweep_candidates(o)][:MAX_CHECKED_SWEEP_VALUES]
    for override, candidate in candidates:
        try:
            cfg = _with_value(job, parser.parse_override(candidate), config_dir)
            if cfg is None:  # a config group, or a key the job does not have: Hydra composes it
                cfg = to_config(compose([*fixed, candidate], config_dir, config_name))
            if override.key_or_group.startswith("env"):
                check_env(cfg)
        except ConfigError as ex:
            fail(f"{ex} (a value of the sweep {override.input_line})")


_ABSENT = object()


def _with_value(job: DictConfig, override, config_dir: Path) -> Config | None:
    """The typed config of `job` with one plain key set to the override's value, as
    composing the fixed overrides plus this one gives it, without composing again (a
    composition costs ~0.2 s; a sweep checks up to MAX_CHECKED_SWEEP_VALUES values). None
    where only Hydra knows the answer: a config group, `+`/`~`/`@`, a key the job lacks."""
    key = override.key_or_group
    if override.is_add() or override.is_force_add() or override.is_delete() or override.package is not None:
        return None
    if key.startswith("hydra") or (config_dir / key.replace(".", "/")).is_dir():  # a group: env, network, ...
        return None
    if OmegaConf.select(job, key, default=_ABSENT) is _ABSENT:
        return None
    changed = copy.deepcopy(job)
    OmegaConf.update(changed, key, override.value(), merge=False)
    return to_config(changed)


def sweep_candidates(override) -> list[str]:
    """The single-value overrides that stand for a sweep override: each value of a
    choice or range, the two bounds of an interval (checked here: low < high, low > 0
    on a log scale)."""
    from hydra.core.override_parser.types import IntervalSweep

    key = override.get_key_element()
    sweep = override.value()
    if isinstance(sweep, IntervalSweep):
        low, high = sweep.start, sweep.end
        if not low < high:
            fail(f"{override.key_or_group}: the search interval needs low < high; got {override.input_line}")
        if "log" in sweep.tags and low <= 0:
            fail(f"{override.key_or_group}: a log-scale interval needs low > 0; got {override.input_line}")
        return [f"{key}={low!r}", f"{key}={high!r}"]
    try:
        values = list(override.sweep_string_iterator())
    except Exception:  # a glob over a group: Hydra expands and checks it
        return []
    return [f"{key}={value}" for value in values]


def _check_sweeper(overrides: list[str], composed: DictConfig, joins_study: bool) -> None:
    """abe's Optuna sweeper options, checked before Hydra opens the sweep's MLflow parent run."""
    sweeper = composed.hydra.sweeper
    if sweeper.get("_target_") == "abe.sweeps.optuna_sweeper.AbeOptunaSweeper":
        from abe.sweeps.confirmation import check_confirmation
        from abe.sweeps.search import check_options
        from abe.sweeps.study import check_study, searched_keys, study_settings

        check_options(
            sweeper.pruner,
            sweeper.pruner_warmup,
            sweeper.pruner_keep,
            sweeper.prune_on,
            sweeper.heartbeat_s,
            sweeper.max_env_steps,
        )
        check_confirmation(sweeper.confirm_top, sweeper.confirm_seeds, composed.n_seeds, composed.trainer.num_envs)
        if not joins_study:
            return
        searched = searched_keys(overrides, sweeper.params)
        check_study(sweeper.storage, sweeper.study_name, study_settings(composed, searched))
    elif sweeper.get("_target_") == "abe.sweeps.pbt_sweeper.AbePbtSweeper":
        from abe.sweeps.population import check_population, pbt_section
        from abe.sweeps.search_space import SearchSpace

        params = [f"{key}={value}" for key, value in (sweeper.params or {}).items()]
        space = SearchSpace.parse([*params, *overrides])
        trainer = composed.trainer
        check_population(
            sweeper.population,
            sweeper.confirm_seeds,
            sweeper.interval,
            trainer.total_steps,
            trainer.num_envs,
            composed.n_seeds,
        )
        pbt_section(sweeper.interval, sweeper.quantile, sweeper.resample, list(sweeper.perturb), space)


def _config_without(key: str | None, args, config_dir: Path) -> DictConfig | None:
    """The config composed without the override of an unknown key (to list the real keys)."""
    if key is None:
        return None
    rest = [o for o in args.overrides if o.split("=", 1)[0].lstrip("+~") != key and "=" in o]
    try:
        return compose(
            _not_swept(rest) if args.multirun else rest,
            config_dir,
            args.config_name or "config",
            key.startswith("hydra."),
        )
    except (HydraException, OmegaConfBaseException):
        return None


_SEARCH_SPACE_ARG = re.compile(r"^hydra\.sweeper\.params\.(?P<key>[\w.]+)=(?P<quote>['\"]?)(?P<value>.*)(?P=quote)$")


def search_space_args(argv: list[str]) -> list[str]:
    """`hydra.sweeper.params.network.width=choice(64,128)` -> `network.width=choice(64,128)`.

    The one rewrite of run.py's command line, for a spelling users asked for (issue 4)
    that Hydra refuses before any plugin sees it: sweep syntax inside its own config, and
    a dotted key under `hydra.sweeper.params`. The sweeper reads a sweep override of the
    key itself as the same search-space entry (command line over config)."""
    return [_SEARCH_SPACE_ARG.sub(r"\g<key>=\g<value>", arg) for arg in argv]


_GROUP_FROM_MISSING = re.compile(r"Could not (?:find|load) '([\w/]+)/([^']+)'")
_UNKNOWN_KEY = re.compile(r"Could not override '([^']+)'")


def unknown_key(ex: Exception) -> str | None:
    """The dotted key of a `Could not override 'a.b'` composition error."""
    found = _UNKNOWN_KEY.search(str(ex)) if isinstance(ex, ConfigCompositionException) else None
    return found.group(1) if found else None


def keys_near(cfg: DictConfig, dotted: str) -> str:
    """The keys that exist next to an unknown dotted key, for the error message."""
    parent, _, _ = dotted.rpartition(".")
    node = cfg
    for part in parent.split(".") if parent else []:
        if not isinstance(node, DictConfig) or part not in node:
            return ""
        node = node[part]
    names = [k for k in node if k != "hydra"] if isinstance(node, DictConfig) else []
    return f"{parent or 'the top level'} has: {', '.join(map(str, names))}" if names else ""


def explain_hydra_error(ex: Exception, base_cfg: DictConfig | None = None) -> str:
    """One line for a Hydra composition error (unknown preset, unknown key, bad syntax)."""
    text = str(ex)
    if isinstance(ex, OverrideParseException):
        detail = ex.message.strip().splitlines()[0]
        return f"malformed override '{ex.override}': {detail}"
    if isinstance(ex, MissingConfigException):
        found = _GROUP_FROM_MISSING.search(text)
        options = ", ".join(sorted(o for o in (ex.options or []) if not o.startswith("_")))
        if found:
            group, name = found.groups()
            return f"{group}: unknown option '{name}'; allowed: {options or '(none)'}"
        return first_line(ex)
    key = unknown_key(ex)
    if key:
        near = keys_near(base_cfg, key) if base_cfg is not None else ""
        return f"unknown config key '{key}'; " + (near or "see `python run.py --cfg job` for all keys")
    if isinstance(ex, ConfigCompositionException):
        lines = [line for line in text.splitlines() if line.strip()]
        return " ".join(lines[:2])
    return f"{type(ex).__name__}: {first_line(ex) if text.strip() else ''}"


def terminate_as_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def launch(main) -> None:
    """`run.py`'s entry: check the command line, run Hydra, end quietly on Ctrl-C."""
    sys.argv = [sys.argv[0], *search_space_args(sys.argv[1:])]
    cfg = check_command_line()
    if cfg is not None and cfg.logger.tracking:
        from abe.tracking.helper import prewarm

        prewarm()  # MLflow imports in a helper process while this one starts training
    from abe.tracking.sweep_parent import end_unfinished_parents

    # SIGTERM ends a run or a sweep as Ctrl-C does (the default would kill this process
    # alone, leaving joblib's workers, RUNNING trials and RUNNING MLflow runs behind).
    signal.signal(signal.SIGTERM, terminate_as_interrupt)
    try:
        main()
    except KeyboardInterrupt:
        end_unfinished_parents("KILLED")
        print("interrupted: MLflow runs marked KILLED; the last checkpoint is kept", file=sys.stderr)
        raise SystemExit(130) from None
    except SystemExit as ex:  # Hydra reports an error in a sweep and exits 1
        if ex.code not in (0, None):
            end_unfinished_parents("FAILED", f"the sweep exited with code {ex.code}; see its output")
        raise
    except BaseException as ex:
        end_unfinished_parents("FAILED", f"{type(ex).__name__}: {ex}")
        raise
