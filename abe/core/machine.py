"""What decides a run's float rounding, so that a reproduction elsewhere can say why it
differs: the same config and seed give the same numbers on the same machine type with
the same library versions; another CPU family (other vector instructions) rounds
differently, and the returns of a chaotic task such as HalfCheetah then drift apart."""

from __future__ import annotations

import os
import platform
import sys
from importlib.metadata import version
from pathlib import Path

PACKAGES = ("torch", "numpy", "gymnasium", "mujoco", "tianshou", "envpool")
# The widest vector instructions decide which kernels numpy, torch and MuJoCo pick.
_SIMD_LEVELS = ("avx512f", "avx2", "avx", "sse4_2", "asimd", "neon")


def _cpu_info() -> tuple[str, set[str]]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return model, flags
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and value.strip():
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    return model, flags


def float_fingerprint() -> dict[str, str]:
    """Tags naming everything that changes float rounding. Thread counts are config
    keys (trainer.torch_threads, env.threads) that a reproduction copies; the CPU count
    is what env.threads=0 turns into."""
    import torch

    model, flags = _cpu_info()
    simd = next((level for level in _SIMD_LEVELS if level in flags), "unknown")
    return {
        "machine.cpu": model,
        "machine.simd": simd,
        "machine.torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "machine.cpu_count": str(os.cpu_count()),
        "versions.python": sys.version.split()[0],
        **{f"versions.{p}": _version(p) for p in PACKAGES},
    }


def _version(package: str) -> str:
    try:
        return version(package)
    except Exception:  # an optional package (envpool) that is not installed
        return "none"


def differences(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """`key old -> new` for each fingerprint tag that differs between two runs' tags."""
    keys = sorted(k for k in set(before) | set(after) if k.startswith(("machine.", "versions.")) or k == "device")
    return [f"{k} {before.get(k, '?')} -> {after.get(k, '?')}" for k in keys if before.get(k) != after.get(k)]
