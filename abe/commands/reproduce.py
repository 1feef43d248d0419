"""`python -m abe reproduce RUN_ID`: fetch a run's saved config from MLflow, train it
again as a new run tagged with its source, and compare the eval returns step by step."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from abe import PROJECT_ROOT
from abe.commands.hydra_edge import RERUN_CONFIG, write_rerun_config
from abe.commands.sources import open_default_store
from abe.core.errors import ConfigError, first_line
from abe.core.machine import differences
from abe.core.result import OBJECTIVE
from abe.core.schema import Config
from abe.tracking.lookup import download, get_run

CONFIG_KEYS = {f.name for f in dataclasses.fields(Config)}


def _entries(node: object, path: str = ""):
    """(dotted key, unresolved value) of every entry of a plain container, nested ones too."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        yield f"{path}{key}", value
        yield from _entries(value, f"{path}{key}.")


_INTERPOLATION = re.compile(r"\$\{([^{}]*)\}")


def _calls_a_resolver(raw: object) -> bool:
    """`${oc.env:HOME}`, `${now:...}`, nested `${${..}}`: anything but a reference to a
    key of the config itself (`${env.id}`, which Hydra's saved configs keep)."""
    if not isinstance(raw, str) or "${" not in raw:
        return False
    references = _INTERPOLATION.findall(raw)
    return any(":" in r or "$" in r for r in references) or _INTERPOLATION.sub("", raw).count("${") > 0


# Keyword arguments of an env that name files: a fetched config must not make abe read them.
_FILE_KWARG_SUFFIXES = ("_file", "_path", "_dir", "_filename")


def _file_kwargs(cfg: DictConfig) -> list[str]:
    env = cfg.get("env")
    kwargs = env.get("kwargs") if isinstance(env, DictConfig) else None
    kwargs = OmegaConf.to_container(kwargs) if isinstance(kwargs, DictConfig) else {}
    return [
        f"env.kwargs.{k}"
        for k, v in (kwargs or {}).items()
        if str(k).endswith(_FILE_KWARG_SUFFIXES) or (isinstance(v, str) and ("/" in v or "\\" in v))
    ]


def load_saved_config(path: Path, run_id: str) -> DictConfig:
    """A saved config is input from someone else's store: plain values of abe's keys only.

    abe builds every object from plain values (references between its keys aside), so a
    `_target_` (or any `_key_` Hydra would act on) or a `hydra:` section can only be an
    attempt to run code, a resolver (`${oc.env:TOKEN}`) one to read this machine
    into the new run's params, and an env keyword naming a file one to read its files.
    """
    try:
        cfg = OmegaConf.load(path)
    except Exception as ex:  # YAML syntax, duplicate keys, ...
        raise ConfigError(f"run {run_id}: its saved config cannot be read: {first_line(ex)}") from None
    if not isinstance(cfg, DictConfig):
        raise ConfigError(f"run {run_id}: its saved config is not a mapping of keys")
    extra = sorted(set(map(str, cfg.keys())) - CONFIG_KEYS)
    entries = list(_entries(OmegaConf.to_container(cfg, resolve=False)))
    special = [key for key, _ in entries if key.rpartition(".")[2].startswith("_")]
    if extra or special:
        raise ConfigError(
            f"run {run_id}: its saved config has keys abe does not use ({', '.join(extra + special)}); "
            "refusing to run it"
        )
    calls = [key for key, value in entries if _calls_a_resolver(value)]
    if calls:
        raise ConfigError(
            f"run {run_id}: its saved config calls resolvers ({', '.join(calls)}), which could read this machine; "
            "a saved config may only refer to its own keys: refusing to run it"
        )
    files = _file_kwargs(cfg)
    if files:
        raise ConfigError(
            f"run {run_id}: its saved config names files of this machine ({', '.join(files)}); "
            "refusing to run it (run it with `python run.py` and a file you chose)"
        )
    return cfg


def why_different(source_tags: dict, new_tags: dict) -> str:
    changed = differences(source_tags, new_tags)
    if changed:
        return (
            "the machine or versions differ: " + ", ".join(changed) + " (float rounding differs between CPU types "
            "and versions; abe reproduces bit for bit on the same machine type with the same versions)"
        )
    return "same machine type, versions and device: this should not happen; please report it"


def reproduce(run_id: str, overrides: list[str], tracking_uri: str | None) -> int:
    client, uri = open_default_store(tracking_uri)
    source = get_run(client, run_id, uri)
    if source.data.params.get("n_seeds", "1") != "1":
        raise ConfigError(
            f"run {run_id} is the run of a {source.data.params['n_seeds']}-seed job; reproduce one of its seeds' "
            "runs (nested under it in the MLflow UI)"
        )
    cfg = load_saved_config(download(client, run_id, "hydra/config.yaml", "saved config"), run_id)
    run_dir = Path("outputs") / "reproduce" / run_id / time.strftime("%Y-%m-%d_%H-%M-%S")
    print(f"reproducing run {run_id} ({source.info.run_name}) from its saved config")
    with tempfile.TemporaryDirectory(prefix="abe-reproduce-") as folder:
        OmegaConf.save(cfg, Path(folder) / "config.yaml")
        write_rerun_config(Path(folder))
        command = ["--config-path", folder, "--config-name", RERUN_CONFIG, f"hydra.run.dir={run_dir}"]
        tracking = ["logger.name=mlflow", f"logger.tracking_uri={uri}", f"logger.tags.reproduces={run_id}"]
        proc = subprocess.run([sys.executable, str(PROJECT_ROOT / "run.py"), *command, *tracking, *overrides])
    if proc.returncode != 0:
        return proc.returncode
    result = json.loads((run_dir / "result.json").read_text())
    return compare(client, source, result)


def compare(client, source, result: dict) -> int:
    """Print the eval returns side by side; 0 when every common evaluation matches exactly."""
    before = {m.step: m.value for m in client.get_metric_history(source.info.run_id, OBJECTIVE)}
    after = {e["env_steps"]: e[OBJECTIVE] for e in result["evaluations"]}
    steps = sorted(set(before) & set(after))
    new_run = client.get_run(result["mlflow_run_id"])
    print(f"\n{'env steps':>12}  {'original':>12}  {'reproduced':>12}  match")
    for step in steps:
        print(
            f"{step:>12,}  {before[step]:>12.4f}  {after[step]:>12.4f}  "
            f"{'yes' if before[step] == after[step] else 'NO'}"
        )
    if not steps:
        verdict, code = "nothing to compare: no evaluation at the same env steps (did overrides change them?)", 1
    elif all(before[s] == after[s] for s in steps):
        verdict, code = f"reproduced exactly: {len(steps)}/{len(steps)} evaluations match", 0
    else:
        matching = sum(before[s] == after[s] for s in steps)
        verdict = f"differs: {matching}/{len(steps)} evaluations match; " + why_different(
            source.data.tags, new_run.data.tags
        )
        code = 1
    client.set_tag(new_run.info.run_id, "reproduction", verdict)
    print(f"{verdict}\nnew run: {new_run.info.run_id}")
    return code
