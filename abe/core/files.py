"""Files a run writes (checkpoint, result.json, plots), written whole or not at all.

Each is written to `<name>.tmp`, flushed to disk, then renamed over the old one: a full
disk, a missing permission or a kill mid-write leaves the last good file where it was.
A write that fails is one line naming the path and the reason (WriteFailed), never a
library's traceback (torch reports a full disk as `unexpected pos ...`).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


class WriteFailed(RuntimeError):
    """A file of the run could not be written: the message names the path and the reason."""


def reason(ex: OSError) -> str:
    return ex.strerror or str(ex) or type(ex).__name__


def write_bytes(path: Path, data: bytes) -> Path:
    """`data` as `path`, atomically (see the module's docstring)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as ex:  # no space, no permission; or interrupted mid-write
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(ex, OSError):
            raise WriteFailed(f"cannot write {path}: {reason(ex)}") from None
        raise
    return path


def write_text(path: Path, text: str) -> Path:
    return write_bytes(path, text.encode())
