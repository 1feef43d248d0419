"""`python -m abe sync RUN_DIR ... | --all`: complete in its store a run whose tracking
server could not be reached (its messages were kept in RUN_DIR/.tracking, see
abe.tracking.journal).

The same run goes on where the store still has it (status back to RUNNING, then the
real final status); metric points the store already holds are not sent again, and the
journal is deleted once the run is complete, so a second sync changes nothing. Where
the store has lost the run, a new one is made with everything the journal holds.
"""

from __future__ import annotations

from pathlib import Path

from abe.core.errors import ConfigError
from abe.core.schema import Config
from abe.core.secrets import mask_secrets
from abe.tracking.journal import bound_http_waits, discard, pending, read


def sync(targets: list[Path]) -> int:
    journals = [j for target in targets for j in pending(target)]
    if not journals:
        print(f"nothing to sync: no kept run in {', '.join(map(str, targets))}")
        return 0
    bound_http_waits()
    for path in journals:
        print(sync_journal(path))
    return 0


def sync_journal(path: Path) -> str:
    messages = read(path)
    if not messages or messages[0][0] != "start":
        raise ConfigError(f"{path}: not a journal abe wrote")
    container, run_dir, overrides, parent, _, device, *command = messages[0][1]  # older journals: no command
    if messages[-1][0] != "finish":
        return f"{run_dir}: its run has not ended yet (still training?); skipped"
    from abe.tracking.mlflow_run import MlflowTracker
    from abe.tracking.store import connect

    cfg = Config.from_dict(container)
    client, _, uri = connect(cfg.logger)
    run_id = next((args for kind, args in messages if kind == "started"), None)
    stored = _metric_points(client, run_id)
    kept = stored is not None
    resumed = run_id if kept else None
    tracker = MlflowTracker(
        cfg, Path(run_dir), overrides, parent, resumed, device=device, command=next(iter(command), None)
    )
    sent = skipped = 0
    for kind, args in messages[1:]:
        if kind == "log_metrics":
            metrics, step = args
            new = {k: v for k, v in metrics.items() if (step, float(v)) not in (stored or {}).get(k, set())}
            sent, skipped = sent + len(new), skipped + len(metrics) - len(new)
            if new:
                tracker.log_metrics(new, step)
        elif kind in ("set_tags", "log_model"):
            getattr(tracker, kind)(*args)
        elif kind == "finish":
            if not kept:
                tracker.set_tags({"abe.synced_from": run_id or "unknown"})
            tracker.finish(*args)
    discard(path)  # the run is complete in the store: a second sync finds nothing
    status = messages[-1][1][2]
    where = f"run {run_id}" if kept else f"new run {tracker.run_id} (the store no longer has run {run_id})"
    return (
        f"{run_dir}: {where} completed in {mask_secrets(uri)}, status {status} "
        f"({sent} metric values sent, {skipped} already there)"
    )


def _metric_points(client, run_id: str | None) -> dict[str, set[tuple[int, float]]] | None:
    """Each metric's (step, value) points in the store; None when the store has no such run."""
    from mlflow.exceptions import MlflowException

    if run_id is None:
        return None
    try:
        run = client.get_run(run_id)
    except MlflowException:
        return None
    return {key: {(m.step, m.value) for m in client.get_metric_history(run_id, key)} for key in run.data.metrics}
