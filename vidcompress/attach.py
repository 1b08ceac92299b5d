"""Attaching vidcompress's parametrizations (masks, weight sharing) to a weight, and baking them in.

Every place a weight is used gets the same parametrization object, so tied weights stay one weight
under pruning and weight sharing: one mask, one codebook, the gradients of every use summed.
Removal bakes the result into the stored Parameter (which keeps its identity, so optimizers and ties
survive) and touches only vidcompress's own parametrizations.

`torch.nn.utils.parametrize` gives each parametrized module a generated class and, on removal,
deletes the weight's property from that class, which a `deepcopy` of the module shares: removing a
parametrization from one copy broke the other. Removal here first moves the module onto a private
copy of its class. Registration moves a weight out of its module's parameters and removal puts it
back at the end; the order the module had before is restored, so its `state_dict` keys come back in
their original order (weight before bias).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.utils import parametrize

from vidcompress.layers import WeightSite, is_own_parametrization

_ORDER = "_vidcompress_parameter_order"


def attach(sites: Sequence[WeightSite], item: nn.Module) -> None:
    """Register `item` as a parametrization of the weight at every site (the same object everywhere)."""
    for site in sites:
        if not hasattr(site.module, _ORDER):  # the order before any parametrization, for `bake`
            object.__setattr__(site.module, _ORDER, tuple(site.module._parameters))
        parametrize.register_parametrization(site.module, site.attribute, item, unsafe=True)


def own_items(module: nn.Module, attribute: str) -> list[nn.Module]:
    """vidcompress's parametrizations on `module.<attribute>` ([] when there are none)."""
    if not parametrize.is_parametrized(module, attribute):
        return []
    return [item for item in module.parametrizations[attribute] if is_own_parametrization(item)]  # type: ignore[index,union-attr]


def _private_class(module: nn.Module) -> None:
    cls = type(module)
    module.__class__ = type(cls.__name__, cls.__bases__, dict(cls.__dict__))


def bake(module: nn.Module, attribute: str) -> bool:
    """Bake vidcompress's parametrizations of `module.<attribute>` into the Parameter; True if any.

    A chain that also holds a foreign parametrization is left alone (vidcompress never stacks on one).
    """
    if not parametrize.is_parametrized(module, attribute):
        return False
    chain = module.parametrizations[attribute]  # type: ignore[index,union-attr]
    if not all(is_own_parametrization(item) for item in chain):
        return False
    _private_class(module)
    parametrize.remove_parametrizations(module, attribute, leave_parametrized=True)
    order = getattr(module, _ORDER, ())
    if set(order) <= set(module._parameters):  # every name back: the original order, then any others
        rest = [name for name in module._parameters if name not in order]
        module._parameters = {name: module._parameters[name] for name in (*order, *rest)}
        if not parametrize.is_parametrized(module):
            object.__delattr__(module, _ORDER)
    return True


def bake_all(model: nn.Module) -> int:
    """Bake every vidcompress parametrization of `model`; returns how many weights were baked."""
    count = 0
    for module in list(model.modules()):
        if parametrize.is_parametrized(module):
            for attribute in list(module.parametrizations):  # type: ignore[union-attr,arg-type]
                count += bake(module, attribute)
    return count


def plain_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict as the architecture without vidcompress's parametrizations would have it:
    each masked or shared weight as currently computed, under its plain name, in the model's order.

    Foreign parametrizations keep their own entries. For saving a snapshot mid-training that loads into
    a fresh model.
    """
    plain: dict[str, torch.Tensor] = {}
    for name, value in model.state_dict().items():
        module_name, marker, rest = name.partition(".parametrizations.")
        if not marker and not name.startswith("parametrizations."):
            plain[name] = value
            continue
        if name.startswith("parametrizations."):
            module_name, rest = "", name.removeprefix("parametrizations.")
        attribute = rest.split(".", 1)[0]
        module = model.get_submodule(module_name) if module_name else model
        if len(own_items(module, attribute)) != len(module.parametrizations[attribute]):  # type: ignore[index,union-attr,arg-type]
            plain[name] = value  # a foreign parametrization: its entries stay
            continue
        key = f"{module_name}.{attribute}" if module_name else attribute
        if key not in plain:
            plain[key] = getattr(module, attribute).detach().clone()
    return plain
