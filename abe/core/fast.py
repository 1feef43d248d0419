"""Every fast path abe takes, in one place: each replaces a slower public call with
one that gives the same numbers to the bit, and tests/unit/test_fast.py checks each
against the call it replaces. (EnvPool's direct send/recv, which takes private names,
lives in abe.core.compat.)

Why they exist: the rollout calls the actor and the envs a few times per vector step
on tiny arrays, where per-call Python (nn.Module dispatch, argument checks, dict
building) costs as much as the arithmetic. docs/benchmarks.md has the measurements.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn


def inference_forward(mlp: nn.Sequential) -> Callable[[torch.Tensor], torch.Tensor]:
    """`mlp(x)` for no-grad calls, without nn.Module's per-call machinery.

    The same kernels (F.linear, torch.tanh, torch.relu) on the same parameters, so
    the same numbers; other layers are called as they are. The parameters are
    referenced, not copied: the function sees every update. Module hooks do not run
    (abe registers none).
    """
    steps: list[Callable[[torch.Tensor], torch.Tensor]] = []
    for layer in mlp:
        if isinstance(layer, nn.Linear):
            steps.append(functools.partial(F.linear, weight=layer.weight, bias=layer.bias))
        elif type(layer) in (nn.Tanh, nn.ReLU):
            steps.append(torch.tanh if isinstance(layer, nn.Tanh) else torch.relu)
        else:
            steps.append(layer)

    def forward(x: torch.Tensor) -> torch.Tensor:
        for step in steps:
            x = step(x)
        return x

    return forward


ELEMENTWISE = (nn.Tanh, nn.ReLU, nn.ELU, nn.GELU, nn.SiLU)  # parameter-free: one call serves all seeds


def stacked_inference_forward(mlps: Sequence[nn.Sequential]) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """`torch.stack([mlp(x[i]) for i, mlp in enumerate(mlps)])` for no-grad calls on x of
    shape (len(mlps), rows, in), in one call per layer: torch.baddbmm over the stacked
    Linear parameters (copied here: build it again after an update), each activation on
    all MLPs at once. None if an MLP has another layer (LayerNorm's fused kernel rounds
    differently from its steps). Each MLP gets its own numbers to the bit only for some
    shapes (MKL's batched kernels round some differently): `stacked_forward_is_exact`."""
    steps: list[Callable[[torch.Tensor], torch.Tensor]] = []
    for layers in zip(*mlps, strict=True):
        if isinstance(layers[0], nn.Linear):
            weight = torch.stack([layer.weight for layer in layers]).transpose(1, 2)  # F.linear's layout
            bias = torch.stack([layer.bias for layer in layers]).unsqueeze(1)
            steps.append(functools.partial(torch.baddbmm, bias, batch2=weight))
        elif type(layers[0]) in ELEMENTWISE:
            steps.append(layers[0])
        else:
            return None

    def forward(x: torch.Tensor) -> torch.Tensor:
        for step in steps:
            x = step(x)
        return x

    return forward


@torch.no_grad()
def stacked_forward_is_exact(mlps: Sequence[nn.Sequential], rows: int, groups: Sequence[slice]) -> bool:
    """Whether `stacked_inference_forward(mlps)` gives each MLP's `inference_forward`
    numbers to the bit on inputs laid out as the rollout lays them out (`groups` of the
    `rows` envs of each MLP's seed). Which kernel runs, and so the rounding, depends on
    the shapes alone; the inputs are random (a private stream: the job's are untouched)."""
    forward = stacked_inference_forward(mlps)
    if forward is None:
        return False
    first = next(iter(mlps[0].parameters()))
    generator = torch.Generator(first.device).manual_seed(0)
    obs = torch.randn(len(mlps), rows, mlps[0][0].in_features, generator=generator, device=first.device)
    for group in groups:
        together = forward(obs[:, group])
        alone = [inference_forward(mlp)(obs[i, group]) for i, mlp in enumerate(mlps)]
        if not all(torch.equal(together[i], mine) for i, mine in enumerate(alone)):
            return False
    return True


def sample_gaussian(mean: torch.Tensor, std: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """What `Normal(mean, std).sample()` draws from `generator` (None: torch's global
    one), to the bit: torch.normal(mean, std) fills its output from N(0, 1), then
    multiplies by std and adds mean; in three calls it costs half. Drawing a whole
    rollout's noise in one call would be another random stream (torch fills small and
    large tensors differently)."""
    noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
    return noise.mul_(std).add_(mean)
