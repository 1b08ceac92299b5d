"""Which tensors of a model are compressible, and of which kind.

A compressible tensor is a floating-point parameter with two or more dimensions:
`conv` when it has three or more (Conv1d/2d/3d weights), `fc` when it has two (Linear, Embedding).
Biases, norms and buffers are never touched.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize


class LayerKind(enum.StrEnum):
    """The two kinds of compressible tensor; each kind has its own default settings."""

    CONV = "conv"
    FC = "fc"

    @classmethod
    def of_shape(cls, shape: tuple[int, ...] | torch.Size) -> LayerKind | None:
        """The kind of a weight of this shape, or None when it is not compressible."""
        if len(shape) >= 3:
            return cls.CONV
        if len(shape) == 2:
            return cls.FC
        return None


@dataclass(frozen=True)
class LayerInfo:
    """One compressible tensor: its state-dict name, kind and shape."""

    name: str
    kind: LayerKind
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        count = 1
        for size in self.shape:
            count *= size
        return count


def is_compressible(tensor: torch.Tensor) -> bool:
    """True for a floating-point tensor of two or more dimensions."""
    return tensor.is_floating_point() and tensor.ndim >= 2


def state_dict_layers(tensors: Mapping[str, torch.Tensor]) -> list[LayerInfo]:
    """The compressible tensors of a state dict, in its order."""
    layers = []
    for name, tensor in tensors.items():
        kind = LayerKind.of_shape(tensor.shape)
        if kind is not None and is_compressible(tensor):
            layers.append(LayerInfo(name, kind, tuple(tensor.shape)))
    return layers


def module_parameters(model: nn.Module) -> Iterator[tuple[str, nn.Module, str, torch.Tensor]]:
    """Yield (plain name, owning module, attribute, current value) for every parameter of `model`.

    Parametrized tensors (pruning masks, weight sharing) are reported under their plain name,
    `layer.weight`, not `layer.parametrizations.weight.original`.
    """
    seen: set[int] = set()
    for module_name, module in model.named_modules(remove_duplicate=False):
        if isinstance(module, parametrize.ParametrizationList) or ".parametrizations." in (f".{module_name}."):
            continue
        prefix = f"{module_name}." if module_name else ""
        names = list(module._parameters)
        if parametrize.is_parametrized(module):
            names += [n for n in module.parametrizations if n not in names]  # type: ignore[union-attr]
        for attribute in names:
            if parametrize.is_parametrized(module, attribute):
                key = id(module.parametrizations[attribute].original)  # type: ignore[index]
            else:
                tensor = module._parameters[attribute]
                if tensor is None:
                    continue
                key = id(tensor)
            if key in seen:  # tied weights are compressed once, under their first name
                continue
            seen.add(key)
            yield prefix + attribute, module, attribute, getattr(module, attribute)


def module_layers(model: nn.Module) -> list[LayerInfo]:
    """The compressible parameters of a module, under their plain state-dict names."""
    layers = []
    for name, _module, _attribute, tensor in module_parameters(model):
        kind = LayerKind.of_shape(tensor.shape)
        if kind is not None and is_compressible(tensor):
            layers.append(LayerInfo(name, kind, tuple(tensor.shape)))
    return layers


def find_parameter(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    """Return the module that owns the parameter `name` and the attribute under which it lives."""
    module_name, _, attribute = name.rpartition(".")
    module = model.get_submodule(module_name) if module_name else model
    return module, attribute
