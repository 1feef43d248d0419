"""The optimizer config group: `optimizer=adam|rmsprop|sgd`, built without `_target_`.

Configs may come from someone else's MLflow store (`python -m abe reproduce`), so a
config names an optimizer from this table instead of an importable class path.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig, OmegaConf

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "rmsprop": torch.optim.RMSprop,
    "sgd": torch.optim.SGD,
}


def optimizer_kwargs(cfg: DictConfig, lr: float) -> tuple[type[torch.optim.Optimizer], dict]:
    """The torch class and keyword arguments for the `optimizer` group and top-level `lr`."""
    kwargs = OmegaConf.to_container(cfg, resolve=True)
    name = kwargs.pop("name")
    if "betas" in kwargs:
        kwargs["betas"] = tuple(kwargs["betas"])
    return OPTIMIZERS[name], {"lr": lr, **kwargs}
