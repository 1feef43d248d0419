"""The MLflow tracker in a helper process, so tracking costs training almost nothing
(docs/tracking.md; costs measured in docs/benchmarks.md, "Tracking cost").

Training sends params, metrics, the model and the artifacts down a socket and waits only
at the end, until the run is complete in the store. Each MLflow run gets a helper forked
from one helper server (`prewarm()`, started with run.py) that has imported MLflow and
torch and warmed MLflow's store and model saving once.

A helper ends its run KILLED when the training process dies without saying how (kill -9,
out of memory): it sees the socket close. Ctrl-C reaches the whole process group; the
helpers ignore it and wait for the training process to send the KILLED status. Every
message is also kept in the run dir's journal (abe.tracking.journal) until the run is
complete in the store; when the tracking server stops answering, the helper says so in
one line and keeps the rest of the run there for `python -m abe sync`.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
import traceback
from multiprocessing.connection import Connection
from pathlib import Path

from abe import PROJECT_ROOT
from abe.core.errors import ConfigError, first_line
from abe.core.files import WriteFailed
from abe.core.result import JobResult, TrainResult
from abe.core.schema import Config
from abe.core.secrets import mask_secrets
from abe.tracking.journal import Journal, bound_http_waits, server_unreachable

# How long the end of a run may take in the helper: the artifacts' upload and the
# model's, each call bounded by abe.tracking.journal.HTTP_BOUNDS.
FINISH_TIMEOUT_S = 300
# How long a process that tracked runs waits, as it exits, for the helper server to end.
SERVER_EXIT_TIMEOUT_S = 30


class _HelperServer:
    """The training process's end of the helper server: asks it for helpers."""

    def __init__(self):
        # A plain subprocess and a socket pair rather than multiprocessing: it starts
        # without re-importing run.py, and from joblib's loky workers too (whose start
        # method multiprocessing cannot hand on).
        ours, theirs = socket.socketpair()
        path = os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))
        self.process = subprocess.Popen(
            [sys.executable, "-c", f"from abe.tracking.helper import serve_forks; serve_forks({theirs.fileno()})"],
            pass_fds=[theirs.fileno()],
            env={**os.environ, "PYTHONPATH": path},
        )
        theirs.close()
        self.control = ours
        atexit.register(self.close)

    def alive(self) -> bool:
        return self.process.poll() is None

    def fork(self) -> Connection:
        """The socket to a new helper (it runs once the server has imported)."""
        ours, theirs = socket.socketpair()
        try:
            socket.send_fds(self.control, [b"f"], [theirs.fileno()])
        finally:
            theirs.close()
        return Connection(ours.detach())

    def close(self) -> None:
        """End the server (it waits for its helpers first), so no process outlives this one."""
        self.control.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=SERVER_EXIT_TIMEOUT_S)


_server: _HelperServer | None = None


def prewarm() -> None:
    """Start the helper server now (it imports MLflow meanwhile); every tracker of this
    process gets a helper forked from it."""
    global _server
    if _server is None or not _server.alive():
        _server = _HelperServer()


def _take_helper() -> Connection:
    global _server
    prewarm()
    try:
        return _server.fork()
    except OSError:  # the server died between the check and the request
        _server = None
        prewarm()
        return _server.fork()


def _send(conn: Connection, message) -> None:
    # Plain pickle: Connection.send's pickler would pass torch tensors as shared
    # memory, which needs a multiprocessing-spawned peer.
    conn.send_bytes(pickle.dumps(message))


def _recv(conn: Connection):
    return pickle.loads(conn.recv_bytes())


def user_command(overrides: list[str]) -> list[str]:
    """The command that made this run, as its user typed it (the run's `command` tag and
    MLflow's Source): run.py with its arguments, `python -m abe ...`, or for a sweep's job
    in a worker process (whose argv is the worker's) run.py with the job's overrides."""
    script = Path(sys.argv[0])
    if script.name == "__main__.py" and script.parent.name == "abe":
        return ["python", "-m", "abe", *sys.argv[1:]]
    if script.suffix == ".py":
        return [script.name, *sys.argv[1:]]
    return ["run.py", *overrides]


class BackgroundTracker:
    """abe.tracking.mlflow_run.MlflowTracker's interface; the work happens in the helper."""

    def __init__(
        self,
        cfg: Config,
        run_dir: Path,
        overrides: list[str],
        device: str,
        parent_run_id: str | None = None,
        resume_run_id: str | None = None,
        wait: bool = False,
    ):
        self._conn = _take_helper()
        self._run_id: str | None = None
        self.helper_pid: int | None = None  # known once the run has started
        self._start_error: Exception | None = None
        command = user_command(overrides)
        start = (cfg.to_dict(), str(run_dir), overrides, parent_run_id, resume_run_id, device, command)
        _send(self._conn, ("start", start))
        if wait:  # a store the user named: fail before training if it cannot take the run
            _ = self.run_id

    @property
    def run_id(self) -> str:
        if self._start_error is not None:
            raise self._start_error
        if self._run_id is None:
            try:
                self._run_id, self.helper_pid = self._reply("started")
            except (ConfigError, WriteFailed) as ex:  # the store refused the run, or its journal: none to end
                self._start_error = ex
                raise
        return self._run_id

    def _reply(self, expected: str | tuple[str, ...]):
        try:
            kind, value = _recv(self._conn)
        except (EOFError, OSError):
            raise ConfigError("logger: the MLflow helper process ended unexpectedly") from None
        if kind == "error":
            raise ConfigError(value)
        if kind == "failed":  # a file of the run could not be written: the path and the reason
            raise WriteFailed(value)
        assert kind in expected if isinstance(expected, tuple) else kind == expected, (kind, expected)
        return value

    def _post(self, name: str, *args) -> None:
        if self._run_id is None and self._conn.poll():  # the start's answer came in: an error?
            _ = self.run_id
        _send(self._conn, (name, args))

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self._post("log_metrics", metrics, step)

    def set_tags(self, tags: dict[str, str]) -> None:
        self._post("set_tags", tags)

    def log_model(self, model, input_example) -> None:
        self._post("log_model", model, input_example)

    def finish(
        self, result: TrainResult | JobResult | None, run_dir: Path, status: str, error: str | None = None
    ) -> None:
        """Send the end of the run and wait until the helper has written it all."""
        try:
            if self._start_error is not None:
                return  # already reported where it happened
            _ = self.run_id
            _send(self._conn, ("finish", (result, run_dir, status, error)))
            if not self._conn.poll(FINISH_TIMEOUT_S):  # the helper's calls are bounded: this is a hang
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.helper_pid, signal.SIGKILL)
                print(
                    f"logger: MLflow did not complete the run within {FINISH_TIMEOUT_S} s; it is kept in "
                    f"{run_dir}: `python -m abe sync {run_dir}` completes it in the store",
                    file=sys.stderr,
                )
                return
            if self._reply(("finished", "kept")) is not None:
                print(f"logger: run kept in {run_dir}/.tracking: `python -m abe sync {run_dir}`", file=sys.stderr)
        finally:
            deadline = time.monotonic() + 60  # close once the helper has (it closes its end as it exits)
            with contextlib.suppress(EOFError, OSError):
                while self._conn.poll(max(0.0, deadline - time.monotonic())):
                    self._conn.recv_bytes()
            self._conn.close()


def serve_forks(fd: int) -> None:
    """The helper server: import MLflow and torch and save a model once, then fork a
    helper for each socket the training process sends, until it closes the control
    socket; then wait for the helpers still ending their runs."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    control = socket.socket(fileno=fd)
    bound_http_waits()
    from abe.core.machine import float_fingerprint
    from abe.tracking.mlflow_run import MlflowTracker

    float_fingerprint()  # imports torch, as the run's tags need
    MlflowTracker.warm_up()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the helpers as they end
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(control, 1, 1)
        except OSError:
            break
        if not message:  # the training process ended
            break
        if os.fork() == 0:
            control.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            _run_helper(fds[0])
        os.close(fds[0])
    with contextlib.suppress(ChildProcessError):
        while True:  # with SIGCHLD ignored, wait() returns once no helper is left
            os.wait()


def _run_helper(fd: int) -> None:
    """A forked helper: run one tracker, then exit without the server's exit handlers."""
    code = 0
    try:
        serve(Connection(fd))
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def failure_line(kind: str, ex: Exception, run_dir: Path) -> str:
    """What one failed MLflow call tells the user: the server's artifact store refusing
    uploads (HTTP 5xx) gets a line of its own."""
    text = first_line(ex)
    if "error responses" in text and "/mlflow-artifacts/" in text:
        server = text.removeprefix("API request to ").split("/api/", 1)[0]
        return (
            f"logger: the MLflow server {server} could not store the run's artifacts (it answers uploads with "
            f"HTTP 5xx: is its --artifacts-destination writable, with space?); the run's files are in {run_dir}"
        )
    return f"logger: MLflow {kind} failed: {text}"


def serve(conn: Connection) -> None:
    """One helper: run one tracker as the messages say, keeping each message in the
    run's journal until the run is complete in the store."""
    from abe.tracking.mlflow_run import MlflowTracker

    try:
        _, start = _recv(conn)
    except (EOFError, OSError):  # the training process ended before its run started
        return
    container, run_dir, overrides, parent, resume, device, *command = start  # older journals: no command
    try:
        journal = Journal(Path(run_dir))
        journal.append("start", start)
    except WriteFailed as ex:  # before the run exists: the training process reports it
        _send(conn, ("failed", str(ex)))
        return
    try:
        cfg = Config.from_dict(container)
        tracker = MlflowTracker(
            cfg, Path(run_dir), overrides, parent, resume, device=device, command=next(iter(command), None)
        )
    except Exception as ex:  # ConfigError: the store refused; anything else: say what
        journal.discard()
        _send(conn, ("error", str(ex) if isinstance(ex, ConfigError) else f"logger: {first_line(ex)}"))
        return
    journal.append("started", tracker.run_id)
    _send(conn, ("started", (tracker.run_id, os.getpid())))
    _Session(conn, tracker, journal, Path(run_dir)).run()


class _Session:
    """The helper's message loop: online, each message goes to MLflow; once the server
    cannot be reached, offline: messages are only kept in the journal."""

    def __init__(self, conn: Connection, tracker, journal: Journal, run_dir: Path):
        self.conn, self.tracker, self.journal, self.run_dir = conn, tracker, journal, run_dir
        self.failure: str | None = None  # an MLflow call failed
        self.write_failure: str | None = None  # the journal could not be written
        self.offline = False

    def run(self) -> None:
        try:
            while True:
                kind, args = _recv(self.conn)
                self._keep(kind, args)
                if kind == "finish":
                    return self._finish(args)
                self._apply(kind, args)
        except (EOFError, OSError):  # the training process ended without finishing the run
            # (OSError: a broken pipe, when it died before the run had even started)
            reason = "the training process ended without reporting (killed?)"
            self._keep("finish", (None, self.run_dir, "KILLED", reason))
            self._apply("set_tags", ({"error": reason},))
            if self.offline:  # sync ends it KILLED later
                self.journal.close()
                return
            with contextlib.suppress(Exception):
                self.tracker.mlflow.end_run(status="KILLED")
            self.journal.discard()

    def _keep(self, kind: str, args) -> None:
        """The message into the journal; a journal that cannot be written fails the run at
        its end (FAILED, with the path and the reason), its messages still go to MLflow."""
        try:
            self.journal.append(kind, args)
        except WriteFailed as ex:
            self.write_failure = self.write_failure or str(ex)

    def _apply(self, kind: str, args) -> None:
        if self.offline or self.failure is not None:
            return
        try:
            getattr(self.tracker, kind)(*args)
        except Exception as ex:
            self._failed(kind, ex)

    def _failed(self, kind: str, ex: Exception) -> None:
        if server_unreachable(ex):  # keep training; keep the rest of the run here
            self.offline = True
            print(
                f"logger: the tracking server cannot be reached ({mask_secrets(first_line(ex))[:200]}); training goes "
                f"on and the run is kept in {self.journal.path.parent}: `python -m abe sync {self.run_dir}` "
                "completes it in the store",
                file=sys.stderr,
            )
        else:  # keep training; report at the end, end the run FAILED (the first failure says why)
            self.failure = self.failure or mask_secrets(failure_line(kind, ex, self.run_dir))

    def _finish(self, args) -> None:
        result, run_dir, status, error = args
        if self.write_failure is not None and not self.offline:  # MLflow has it all, the journal not
            status, error = "FAILED", error or self.write_failure
        if self.failure is not None:  # an MLflow call failed: the artifacts still go, the run ends FAILED
            status, error = "FAILED", self.failure
        if not self.offline:
            try:
                self.tracker.finish(result, run_dir, status, error)
            except Exception as ex:
                self._failed("finish", ex)
        if self.offline:
            self.journal.close()
            reply = ("kept", str(self.run_dir))
        elif self.failure is not None:
            self.journal.discard()
            with contextlib.suppress(Exception):
                self.tracker.mlflow.end_run(status="FAILED")
            reply = ("error", self.failure)
        elif self.write_failure is not None:
            self.journal.discard()
            reply = ("failed", self.write_failure)
        else:
            self.journal.discard()
            reply = ("finished", None)
        _send(self.conn, reply)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)  # all is stored or kept; skip over a second of interpreter teardown
