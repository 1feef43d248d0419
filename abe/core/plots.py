"""Pictures people would rather look at than read."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers
import matplotlib.pyplot as plt
import numpy as np

from abe.core.files import write_bytes


def _save(fig, path: Path) -> Path:
    """The figure as a PNG at `path`, written whole or not at all (abe.core.files)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return write_bytes(path, buffer.getvalue())


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
    return _save(fig, path)


def sweep_plot(points: list[tuple[float, float, float]], path: Path) -> Path:
    """Objective against lr (log scale) and gamma, one point per finished trial."""
    lr, gamma, value = (np.array(column) for column in zip(*points, strict=True))
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.0), dpi=100)
    axes[0].scatter(lr, value)
    axes[0].set_xscale("log")
    axes[0].set_xlabel("lr")
    axes[1].scatter(gamma, value)
    axes[1].set_xlabel("gamma")
    for ax in axes[:2]:
        ax.set_ylabel("final eval return")
        ax.grid(alpha=0.3)
    dots = axes[2].scatter(lr, gamma, c=value, cmap="viridis", s=60)
    axes[2].set_xscale("log")
    axes[2].set_xlabel("lr")
    axes[2].set_ylabel("gamma")
    fig.colorbar(dots, ax=axes[2], label="final eval return")
    best = int(np.argmax(value))
    axes[2].scatter([lr[best]], [gamma[best]], marker="*", s=250, c="red", label="best")
    axes[2].legend(loc="best")
    fig.suptitle(f"{len(value)} trials: objective against lr and gamma")
    fig.tight_layout()
    return _save(fig, path)


def seeds_curve(curves: list[list[dict]], seeds: list[int], title: str, path: Path) -> Path:
    """Each seed's eval return against env steps, and their mean."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    for seed, evaluations in zip(seeds, curves, strict=True):
        steps = [e["env_steps"] for e in evaluations]
        ax.plot(steps, [e["eval/return_mean"] for e in evaluations], alpha=0.6, linewidth=1, label=f"seed {seed}")
    steps = [e["env_steps"] for e in curves[0]]
    mean = np.mean([[e["eval/return_mean"] for e in evaluations] for evaluations in curves], axis=0)
    ax.plot(steps, mean, color="black", linewidth=2, label="mean")
    ax.set_xlabel("env steps")
    ax.set_ylabel("eval return (mean action)")
    ax.set_title(f"{title}, {len(seeds)} seeds")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    return _save(fig, path)


def confirmation_plot(rows: list[dict], path: Path) -> Path:
    """Held-out returns of each confirmed configuration: the runs, the mean and its 95%
    bootstrap interval, best first."""
    fig, ax = plt.subplots(figsize=(6.4, 1.2 + 0.8 * len(rows)), dpi=100)
    for y, row in enumerate(rows):
        ax.scatter(row["returns"], [y] * len(row["returns"]), color="tab:blue", alpha=0.6, s=20)
        low, high = row["ci95"]
        ax.plot([low, high], [y, y], color="black", linewidth=2)
        ax.scatter([row["mean"]], [y], color="black", marker="|", s=200)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(
        [
            ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in row["params"].items())
            for row in rows
        ],
        fontsize="small",
    )
    ax.invert_yaxis()
    ax.set_xlabel("final eval return on held-out seeds (dots), mean and 95% bootstrap interval")
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return _save(fig, path)


def population_plot(members: list[dict], best_seed: int, env_id: str, path: Path) -> Path:
    """A PBT population: each member's schedule of lr and gamma (the one behind its final
    weights, inherited through its copies) as steps, and its eval returns; the best bold."""
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.0), dpi=100)
    for member in members:
        best = member["seed"] == best_seed
        style = {
            "linewidth": 2.5 if best else 1,
            "alpha": 1 if best else 0.5,
            "color": "black" if best else None,
            "label": f"seed {member['seed']}" + (" (best)" if best else ""),
        }
        steps = [point[0] for point in member["schedule"]] + [member["env_steps"]]
        for ax, column in zip(axes[:2], (1, 2), strict=True):
            values = [point[column] for point in member["schedule"]]
            ax.step(steps, [*values, values[-1]], where="post", **style)
        evaluations = member["evaluations"]
        axes[2].plot([e["env_steps"] for e in evaluations], [e["eval/return_mean"] for e in evaluations], **style)
    for ax, label in zip(axes, ("lr (before lr decay)", "gamma", "eval return (mean action)"), strict=True):
        ax.set_xlabel("env steps")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_yscale("log")
    axes[2].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"{env_id}: population-based training, {len(members)} members (schedules behind the final weights)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
