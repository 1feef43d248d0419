"""The tutorial's ActorCriticNet, split the way Tianshou 2.x wants it.

Actor and critic are separate MLPs of ``Linear -> activation -> LayerNorm`` blocks
(tutorial 4, "Some useful layers"): no LayerNorm on the output layer, because the
magnitude of a mean action or a state value means something. The Gaussian policy
has a state-independent log-std parameter clamped to [-20, 2] as in the tutorial.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from abe.core.schema import LOG_STD_MAX, LOG_STD_MIN

# The names `network.activation` accepts (abe.core.schema.ACTIVATIONS), as layers.
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
}


def build_mlp(in_dim: int, out_dim: int, width: int, depth: int, activation: str, layer_norm: bool) -> nn.Sequential:
    """``depth`` hidden layers of ``width`` units, then a linear output layer."""
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Linear(in_dim if i == 0 else width, width), ACTIVATIONS[activation]()]
        if layer_norm:
            layers.append(nn.LayerNorm(width))
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


def orthogonal_init(mlp: nn.Sequential, output_gain: float) -> None:
    """Orthogonal weights, zero biases; the output layer gets its own small gain.

    The initialisation of OpenAI baselines' A2C/PPO, which Tianshou's and SB3's MuJoCo
    results rely on: a small policy output gain (0.01) starts every action near the
    centre of its range, so early exploration comes from the log-std alone.
    """
    linears = [m for m in mlp if isinstance(m, nn.Linear)]
    for layer in linears:
        gain = output_gain if layer is linears[-1] else np.sqrt(2)
        nn.init.orthogonal_(layer.weight, gain=gain)
        nn.init.zeros_(layer.bias)


def as_tensor(obs: np.ndarray | torch.Tensor, device: torch.device | str) -> torch.Tensor:
    return torch.as_tensor(obs, dtype=torch.float32, device=device)


class GaussianActor(nn.Module):
    """Mean from an MLP; std from one learned log-std per action dimension or, with
    `sde`, state-dependent (gSDE, Raffin et al. 2021): the action is
    mean + latent(s) @ E, where latent(s) is the mean net's last hidden layer and E a
    (latent, action) matrix of N(0, exp(log_std)^2) entries, drawn per env and held for
    several steps (abe.agent.sde). For a given s the action is Gaussian with variance
    latent(s)^2 @ exp(log_std)^2 per action dimension: `forward` returns that std, so
    log-probabilities are exact. As in SB3, the latent is detached in the std: the
    features learn from the mean only."""

    SDE_EPS = 1e-6  # added to the variance, as SB3 does (a zero latent has zero variance)

    def __init__(self, mean_net: nn.Sequential, action_dim: int, log_std_init: float, device: str, sde: bool = False):
        super().__init__()
        self.mean_net, self.sde, self.device = mean_net, sde, device
        shape = (mean_net[-1].in_features, action_dim) if sde else (action_dim,)
        self.log_std = nn.Parameter(torch.full(shape, float(log_std_init)))

    def forward(self, obs, state=None, info=None):  # Tianshou's actor signature
        x = as_tensor(obs, self.device)
        if not self.sde:
            mean = self.mean_net(x)
            return (mean, self.std().expand_as(mean)), state
        latent = self.mean_net[:-1](x)
        mean = self.mean_net[-1](latent)
        return (mean, self.sde_std(latent)), state

    def std(self) -> torch.Tensor:
        """Per action dimension; with `sde`, the (latent, action) matrix of the noise's stds."""
        return self.log_std.clamp(LOG_STD_MIN, LOG_STD_MAX).exp()

    def sde_std(self, latent: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(latent.detach() ** 2 @ self.std() ** 2 + self.SDE_EPS)


class Critic(nn.Module):
    """State value V(s), shape (batch, 1) as Tianshou's A2C expects."""

    def __init__(self, value_net: nn.Sequential, device: str):
        super().__init__()
        self.value_net = value_net
        self.device = device

    def forward(self, obs):
        return self.value_net(as_tensor(obs, self.device))


class ObservationNormalizer(nn.Module):
    """Running mean/variance of observations (parallel algorithm of Chan et al.).

    Statistics are buffers, so they travel inside checkpoints and exported models; the
    training loop stores normalised observations, as SB3's VecNormalize does.
    """

    def __init__(self, obs_dim: int, clip: float = 10.0, enabled: bool = True):
        super().__init__()
        self.clip = clip
        self.enabled = enabled
        self.register_buffer("mean", torch.zeros(obs_dim, dtype=torch.float64))
        self.register_buffer("var", torch.ones(obs_dim, dtype=torch.float64))
        self.register_buffer("count", torch.tensor(1e-4, dtype=torch.float64))

    def update(self, obs: np.ndarray) -> None:
        if not self.enabled:
            return
        # In place through numpy views of the (CPU) buffers: numpy on 17-element
        # arrays costs a fraction of what the same torch ops cost per call.
        mean, var, count = self.mean.numpy(), self.var.numpy(), self.count.numpy()
        batch_mean, batch_var = obs.mean(axis=0, dtype=np.float64), obs.var(axis=0, dtype=np.float64)
        batch_count = obs.shape[0]
        delta = batch_mean - mean
        total = count + batch_count
        m2 = var * count + batch_var * batch_count + delta**2 * count * batch_count / total
        mean += delta * batch_count / total
        var[:] = m2 / total
        count[...] = total

    def normalize(self, obs: np.ndarray) -> np.ndarray:
        return self.frozen()(obs)

    def mean_and_scale(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean, 1 / std) of the current statistics: normalised = (obs - mean) * scale."""
        return self.mean.numpy().copy(), 1.0 / np.sqrt(self.var.numpy() + 1e-8)

    def frozen(self) -> Callable[[np.ndarray], np.ndarray]:
        """`normalize` with the current statistics, for many calls before the next `update`
        (one rollout): the square root and reciprocal are taken once."""
        if not self.enabled:
            return _as_float32
        return _clipped_affine(*self.mean_and_scale(), self.clip)

    @staticmethod
    def frozen_together(normalizers: list[ObservationNormalizer]) -> Callable[[np.ndarray], np.ndarray]:
        """`frozen()` of several normalisers in one call on arrays of shape (len(normalizers),
        ..., obs_dim): slice i with normaliser i's statistics, the same numbers elementwise."""
        first = normalizers[0]
        if not first.enabled:
            return _as_float32
        means, scales = zip(*(normalizer.mean_and_scale() for normalizer in normalizers), strict=True)
        return _clipped_affine(np.stack(means)[:, None], np.stack(scales)[:, None], first.clip)

    def as_layers(self) -> list[nn.Module]:
        """`frozen()` as torch layers (float32), for the exported policy."""
        if not self.enabled:
            return []
        mean, scale = self.mean_and_scale()
        return [diagonal_affine(scale, -mean * scale), nn.Hardtanh(-self.clip, self.clip)]


def _as_float32(obs: np.ndarray) -> np.ndarray:
    return obs.astype(np.float32, copy=False)


def _clipped_affine(mean: np.ndarray, scale: np.ndarray, clip: float) -> Callable[[np.ndarray], np.ndarray]:
    def normalize(obs: np.ndarray) -> np.ndarray:
        normed = (obs - mean) * scale
        return np.minimum(np.maximum(normed, -clip, out=normed), clip, out=normed).astype(np.float32)

    return normalize


def diagonal_affine(scale: np.ndarray, shift: np.ndarray) -> nn.Linear:
    """x -> x * scale + shift, elementwise, as a frozen Linear layer."""
    layer = nn.Linear(len(scale), len(scale))
    with torch.no_grad():
        layer.weight.copy_(torch.diag(torch.as_tensor(scale, dtype=torch.float32)))
        layer.bias.copy_(torch.as_tensor(shift, dtype=torch.float32))
    layer.requires_grad_(False)
    return layer


def summary_table(named_modules: dict[str, nn.Module]) -> str:
    """A per-layer table (like torchsummary's) and the total number of parameters."""
    rows = [("layer", "type", "output", "params")]
    total = 0
    for prefix, module in named_modules.items():
        for name, child in module.named_modules():
            if list(child.children()):
                continue  # containers: their leaves are listed
            params = sum(p.numel() for p in child.parameters(recurse=False))
            out = getattr(child, "out_features", getattr(child, "normalized_shape", ""))
            out = out[0] if isinstance(out, tuple) else out
            rows.append((f"{prefix}.{name}", type(child).__name__, str(out), f"{params:,}"))
            total += params
        for name, param in module.named_parameters(recurse=False):
            rows.append((f"{prefix}.{name}", "Parameter", str(tuple(param.shape)), f"{param.numel():,}"))
            total += param.numel()
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    fmt = "  ".join(f"{{:<{w}}}" if i < 3 else f"{{:>{w}}}" for i, w in enumerate(widths))
    lines = [fmt.format(*rows[0]), "-" * (sum(widths) + 6)]
    lines += [fmt.format(*row) for row in rows[1:]]
    lines += ["-" * (sum(widths) + 6), f"total parameters: {total:,}"]
    return "\n".join(lines)
