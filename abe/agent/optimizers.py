"""The optimizer config group (`optimizer=adam|rmsprop|sgd`), built from plain values.

Configs may come from someone else's MLflow store (`python -m abe reproduce`), so a
config names an optimizer from this table instead of an importable class path.
"""

from __future__ import annotations

import torch

from abe.core.schema import OptimizerConfig

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "rmsprop": torch.optim.RMSprop,
    "sgd": torch.optim.SGD,
}


def optimizer_kwargs(cfg: OptimizerConfig, lr: float) -> tuple[type[torch.optim.Optimizer], dict]:
    """The torch class and keyword arguments for the `optimizer` group and top-level `lr`."""
    # foreach: one call per arithmetic step for all parameter tensors, not a Python loop
    # over them (torch's default on GPUs only); the same kernels, the same weights.
    kwargs = {"weight_decay": cfg.weight_decay, "foreach": True, **cfg.options}
    if "betas" in kwargs:
        kwargs["betas"] = tuple(kwargs["betas"])
    return OPTIMIZERS[cfg.name], {"lr": lr, **kwargs}
