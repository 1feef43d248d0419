import numpy as np
import torch
from torch import nn

from abe.agent.networks import GaussianActor, ObservationNormalizer, build_mlp, summary_table


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_tutorial_parameter_counts():
    # Tutorial 4: 4 inputs -> 32 -> 32 -> 2 outputs has 1282 parameters; LayerNorm after
    # each hidden layer adds 2 x 2 x 32 = 128 (its scale and shift) for 1410.
    assert count_parameters(build_mlp(4, 2, 32, 2, "relu", layer_norm=False)) == 1282
    assert count_parameters(build_mlp(4, 2, 32, 2, "relu", layer_norm=True)) == 1410


def test_layer_norm_follows_each_hidden_activation_but_not_the_output():
    mlp = build_mlp(4, 2, 32, 3, "relu", layer_norm=True)
    kinds = [type(m) for m in mlp]
    assert kinds == [nn.Linear, nn.ReLU, nn.LayerNorm] * 3 + [nn.Linear]


def test_summary_table_lists_layers_and_total():
    actor = GaussianActor(build_mlp(4, 2, 32, 2, "relu", True), 2, 0.0, "cpu")
    table = summary_table({"actor": actor})
    assert "actor.mean_net.2" in table and "LayerNorm" in table and "actor.log_std" in table
    assert table.splitlines()[-1] == "total parameters: 1,412"  # 1410 + one log-std per action


def test_log_std_is_clamped_to_the_tutorial_range():
    actor = GaussianActor(build_mlp(3, 2, 8, 1, "tanh", False), 2, 0.0, "cpu")
    with torch.no_grad():
        actor.log_std.copy_(torch.tensor([-50.0, 50.0]))
    (_, std), _ = actor(np.zeros((1, 3), dtype=np.float32))
    assert torch.allclose(std.log(), torch.tensor([[-20.0, 2.0]]))


def test_observation_normalizer_matches_numpy_statistics():
    rng = np.random.default_rng(0)
    data = rng.normal(5.0, 3.0, size=(3000, 4))
    norm = ObservationNormalizer(4)
    for chunk in np.split(data, 30):
        norm.update(chunk)
    np.testing.assert_allclose(norm.mean.numpy(), data.mean(0), rtol=1e-6)
    np.testing.assert_allclose(norm.var.numpy(), data.var(0), rtol=1e-4)
    normed = norm.normalize(data)
    assert abs(normed.mean()) < 1e-3 and abs(normed.std() - 1) < 1e-3
    # The torch layers (of exported models) agree with the numpy path.
    layers = nn.Sequential(*norm.as_layers())
    np.testing.assert_allclose(layers(torch.from_numpy(data).float()).detach().numpy(), normed, atol=1e-5)
