"""Pictures people would rather look at than read."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def learning_curve(evaluations: list[dict], title: str, path: Path) -> Path:
    """Eval return mean ± std against env steps."""
    steps = np.array([e["env_steps"] for e in evaluations])
    mean = np.array([e["eval/return_mean"] for e in evaluations])
    std = np.array([e["eval/return_std"] for e in evaluations])
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    ax.plot(steps, mean, marker="o", markersize=3, label="eval return (mean action)")
    ax.fill_between(steps, mean - std, mean + std, alpha=0.25, label="± std over episodes")
    ax.set_xlabel("env steps")
    ax.set_ylabel("episode return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
