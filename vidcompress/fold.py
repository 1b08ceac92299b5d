"""`fold_bn_`: merge eval-mode batch norm into the convolution or linear layer before it.

A batch norm in eval mode is a per-channel affine map, y = a * x + c with a = gamma / sqrt(var + eps)
and c = beta - a * mean. Applied to the output of a layer y = W x + b it folds into the layer:
W' = a * W (per output channel), b' = a * b + c, and the batch norm becomes `nn.Identity`. Deployed
models are often folded; folding before compression stores the merged weights once and the batch norm's
four vectors not at all.

Which layer precedes which is read from the model's graph (`torch.fx.symbolic_trace`), so only pairs
where the batch norm's one input is the layer's output, and that output goes nowhere else, are folded.
A model that fx cannot trace as a whole is read a submodule at a time (those that can be traced).
"""

from __future__ import annotations

import torch
import torch.fx
from torch import nn
from torch.nn.utils import parametrize

from vidcompress.errors import ConfigError

_FOLDABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def fold_bn_(model: nn.Module) -> list[tuple[str, str]]:
    """Fold every eval-mode batch norm that directly follows a Conv1d/2d/3d or Linear into it, in place.

    Returns the (layer, batch norm) names folded. The model's outputs are unchanged up to float
    rounding; each folded batch norm is replaced by `nn.Identity`.

    Raises:
        ConfigError: the model is in training mode, cannot be traced by torch.fx (neither whole nor
            any submodule holding a pair), or a layer to fold
            has pruning masks or weight sharing attached (fold first, then compress).
    """
    if model.training:
        raise ConfigError("fold_bn_ folds batch norm as it runs in eval mode: call model.eval() first")
    attached = next((name for name, module in model.named_modules() if parametrize.is_parametrized(module)), None)
    if attached is not None:
        raise ConfigError(f"{attached}: has masks or weight sharing attached; call fold_bn_ before prune_/quantize_")
    failure: list[str] = []
    pairs = _traced_pairs(model, "", failure)
    has_norms = any(isinstance(module, _NORMS) for module in model.modules())
    if not pairs and failure and has_norms:
        why = f"fold_bn_ reads the layer order from torch.fx, which cannot trace this model: {failure[0]}"
        raise ConfigError(why)
    modules = dict(model.named_modules())
    for layer_name, norm_name in pairs:
        _fold(modules[layer_name], modules[norm_name])
        parent_name, _, child = norm_name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, nn.Identity())
    return pairs


def _traced_pairs(module: nn.Module, prefix: str, failure: list[str]) -> list[tuple[str, str]]:
    """The (layer, norm) pairs to fold in `module`, read from its fx graph; where it cannot be traced
    (data-dependent control flow, say), from those of its children that can (the first error is kept
    in `failure`)."""
    try:
        graph = torch.fx.symbolic_trace(module).graph
    except Exception as error:  # fx raises many kinds (TraceError, TypeError, NotImplementedError, ...)
        if not failure:
            failure.append(str(error).splitlines()[0] if str(error) else type(error).__name__)
        return [
            pair
            for name, child in module.named_children()
            for pair in _traced_pairs(child, f"{prefix}{name}.", failure)
        ]
    modules = dict(module.named_modules())
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[str(node.target)] = calls.get(str(node.target), 0) + 1
    pairs = []
    for node in graph.nodes:
        norm = modules.get(str(node.target)) if node.op == "call_module" else None
        if not isinstance(norm, _NORMS) or len(node.args) != 1 or not isinstance(node.args[0], torch.fx.Node):
            continue
        source = node.args[0]
        layer = modules.get(str(source.target)) if source.op == "call_module" else None
        if not isinstance(layer, _FOLDABLE) or len(source.users) != 1:
            continue
        if calls[str(source.target)] != 1 or calls[str(node.target)] != 1 or norm.running_mean is None:
            continue  # a layer or norm used twice, or a norm without running statistics: not one affine map
        if isinstance(layer, nn.modules.conv._ConvTransposeNd) or _out_features(layer) != norm.num_features:
            continue
        pairs.append((f"{prefix}{source.target}", f"{prefix}{node.target}"))
    return pairs


def _out_features(layer: nn.Module) -> int:
    return layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels  # type: ignore[return-value]


@torch.no_grad()
def _fold(layer: nn.Module, norm: nn.modules.batchnorm._BatchNorm) -> None:
    assert norm.running_mean is not None and norm.running_var is not None
    weight = layer.weight
    assert isinstance(weight, torch.Tensor)
    scale = torch.rsqrt(norm.running_var.double() + norm.eps)
    shift = -norm.running_mean.double() * scale
    if norm.affine:
        scale, shift = scale * norm.weight.double(), shift * norm.weight.double() + norm.bias.double()
    shape = (-1, *([1] * (weight.ndim - 1)))
    weight.copy_((weight.double() * scale.view(shape)).to(weight.dtype))
    bias = layer.bias
    old_bias = bias.double() if isinstance(bias, torch.Tensor) else torch.zeros_like(scale)
    new_bias = (old_bias * scale + shift).to(weight.dtype)
    if isinstance(bias, torch.Tensor):
        bias.copy_(new_bias)
    else:
        layer.bias = nn.Parameter(new_bias, requires_grad=weight.requires_grad)
