"""The MLflow tracker in a helper process, so tracking costs training almost nothing.

Importing MLflow (~1.6 s here) and opening its SQLAlchemy store (~1.0 s) are most of
what tracking costs a run (bench/tracking_overhead.py); in the training process they
added 29% to a 20k-step HalfCheetah command. A helper process does all MLflow work on
the other core: `prewarm()` starts it when run.py starts, so MLflow imports while the
training process imports torch and builds its envs; training then sends params,
metrics, the model and the artifacts down a pipe and only waits at the end, until the
run is complete in the store.

The helper also ends the run when the training process dies without saying how (kill
-9, out of memory): it sees the pipe close and marks the run KILLED, so no run stays
RUNNING. Ctrl-C reaches the whole process group; the helper ignores it and waits for
the training process to send the KILLED status.
"""

from __future__ import annotations

import multiprocessing
import signal
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from abe.errors import ConfigError, first_line

_CONTEXT = multiprocessing.get_context("spawn")  # no inherited threads, handlers or locks
_prewarmed = None


def prewarm() -> None:
    """Start a helper now (it imports MLflow meanwhile); the next tracker uses it."""
    global _prewarmed
    if _prewarmed is None:
        _prewarmed = _start_helper()


def _start_helper():
    ours, theirs = _CONTEXT.Pipe()
    process = _CONTEXT.Process(target=_serve, args=(theirs,), daemon=True, name="abe-mlflow")
    process.start()
    theirs.close()
    return process, ours


def _take_helper():
    global _prewarmed
    helper, _prewarmed = _prewarmed, None
    if helper is not None and helper[0].is_alive():
        return helper
    return _start_helper()


class BackgroundTracker:
    """abe.tracking.MlflowTracker's interface; the work happens in the helper."""

    def __init__(self, cfg: DictConfig, run_dir: Path, overrides: list[str], parent_run_id: str | None = None,
                 resume_run_id: str | None = None, wait: bool = False):
        self._process, self._conn = _take_helper()
        self._run_id: str | None = None
        container = OmegaConf.to_container(cfg, resolve=True)
        self._conn.send(("start", (container, str(run_dir), overrides, parent_run_id, resume_run_id)))
        if wait:  # a store the user named: fail before training if it cannot take the run
            _ = self.run_id

    @property
    def run_id(self) -> str:
        if self._run_id is None:
            self._run_id = self._reply("started")
        return self._run_id

    def _reply(self, expected: str):
        try:
            kind, value = self._conn.recv()
        except EOFError:
            raise ConfigError("logger: the MLflow helper process ended unexpectedly") from None
        if kind == "error":
            raise ConfigError(value)
        assert kind == expected, (kind, expected)
        return value

    def _send(self, name: str, *args) -> None:
        if self._run_id is None and self._conn.poll():  # the start's answer came in: an error?
            _ = self.run_id
        self._conn.send((name, args))

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self._send("log_metrics", metrics, step)

    def set_tags(self, tags: dict[str, str]) -> None:
        self._send("set_tags", tags)

    def log_model(self, model, input_example) -> None:
        self._send("log_model", model, input_example)

    def finish(self, result: dict | None, run_dir: Path, status: str, error: str | None = None) -> None:
        """Send the end of the run and wait until the helper has written it all."""
        try:
            _ = self.run_id
            self._conn.send(("finish", (result, run_dir, status, error)))
            self._reply("finished")
        finally:
            self._conn.close()
            self._process.join(timeout=60)


def _serve(conn) -> None:
    """The helper: import MLflow, then run one tracker as the messages say."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import mlflow  # noqa: F401  (the slow import, done while the trainer starts up)

    from abe.tracking import MlflowTracker, mask_secrets

    tracker, failure = None, None
    try:
        kind, (container, run_dir, overrides, parent, resume) = conn.recv()
        try:
            tracker = MlflowTracker(OmegaConf.create(container), Path(run_dir), overrides, parent, resume)
        except Exception as ex:  # ConfigError: the store refused; anything else: say what
            conn.send(("error", str(ex) if isinstance(ex, ConfigError) else f"logger: {first_line(ex)}"))
            return
        conn.send(("started", tracker.run_id))
        import mlflow.pytorch  # noqa: F401  (and torch: ready for log_model at the end)

        while True:
            kind, args = conn.recv()
            try:
                if kind == "finish":
                    tracker.finish(*args)
                    conn.send(("finished", None) if failure is None else ("error", failure))
                    return
                if failure is None:
                    getattr(tracker, kind)(*args)
            except Exception as ex:  # keep training; report at the end, end the run FAILED
                failure = mask_secrets(f"logger: MLflow {kind} failed: {first_line(ex)}")
                if kind == "finish":
                    conn.send(("error", failure))
                    tracker.mlflow.end_run(status="FAILED")
                    return
    except (EOFError, OSError):  # the training process ended without finishing the run
        # (OSError: a broken pipe, when it died before the run had even started)
        if tracker is not None:
            tracker.set_tags({"error": "the training process ended without reporting (killed?)"})
            tracker.mlflow.end_run(status="KILLED")
