"""`fold_bn_`: eval-mode batch norm merged into the layer before it, outputs unchanged."""

import pytest
import torch
from models import R3D18Like
from torch import nn

from vidcompress import ConfigError, PruneConfig, Pruner, encode, fold_bn_, load_compressed


def _trained_like(model: nn.Module) -> nn.Module:
    """Batch norms with statistics and affine parameters away from their defaults."""
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            for tensor in (module.running_mean, module.weight, module.bias):
                tensor.data = torch.randn(tensor.shape, generator=generator)
            module.running_var.data = torch.rand(module.running_var.shape, generator=generator) + 0.1
    return model.eval()


class Shared(nn.Module):
    """conv -> bn folds; a conv whose output also feeds a skip, and a bn applied twice, do not."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.branch, self.branch_bn = nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8)
        self.twice = nn.BatchNorm2d(8)
        self.fc, self.fc_bn = nn.Linear(8, 6), nn.BatchNorm1d(6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.conv(x))
        z = self.branch(y)
        y = self.branch_bn(z) + z  # z goes to two places: folding would change the skip
        y = self.twice(self.twice(y))
        return self.fc_bn(self.fc(y.mean((2, 3))))


@pytest.mark.parametrize(("build", "shape"), [(R3D18Like, (2, 3, 4, 16, 16)), (Shared, (2, 3, 9, 9))])
def test_folding_keeps_the_outputs(build, shape) -> None:
    torch.manual_seed(0)
    model = _trained_like(build())
    x = torch.randn(shape)
    with torch.no_grad():
        before = model(x)
        pairs = fold_bn_(model)
        after = model(x)
    assert pairs
    assert torch.allclose(after, before, rtol=1e-4, atol=1e-5 * float(before.abs().max()))
    for _, norm in pairs:
        assert isinstance(model.get_submodule(norm), nn.Identity)
    if build is Shared:
        assert pairs == [("conv", "bn"), ("fc", "fc_bn")]
        assert isinstance(model.branch_bn, nn.BatchNorm2d) and isinstance(model.twice, nn.BatchNorm2d)


def test_a_folded_model_compresses_with_fewer_raw_bytes_and_loads_into_a_folded_architecture(tmp_path) -> None:
    model = _trained_like(R3D18Like())
    plain = encode(model, tmp_path / "plain.vcz")
    fold_bn_(model)
    folded = encode(model, tmp_path / "folded.vcz")
    assert len(folded.raw) < len(plain.raw) and folded.file_bytes < plain.file_bytes
    architecture = R3D18Like().eval()
    fold_bn_(architecture)  # the same modules: biases on the folded layers, Identity for the norms
    load_compressed(tmp_path / "folded.vcz", architecture)
    x = torch.randn(1, 3, 4, 16, 16)
    with torch.no_grad():
        assert torch.equal(architecture(x), model(x))


def test_training_mode_untraceable_models_and_attached_masks_are_errors() -> None:
    with pytest.raises(ConfigError, match=r"call model\.eval"):
        fold_bn_(R3D18Like().train())

    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn = nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)

        def forward(self, x):
            return self.bn(self.conv(x)) if x.sum() > 0 else x  # data-dependent: fx cannot trace it

    with pytest.raises(ConfigError, match="cannot trace this model"):
        fold_bn_(Branchy().eval())
    masked = _trained_like(R3D18Like())
    Pruner(PruneConfig(sparsity="0.5")).attach(masked)  # masks kept attached, as while training
    with pytest.raises(ConfigError, match="call fold_bn_ before prune_"):
        fold_bn_(masked.eval())
