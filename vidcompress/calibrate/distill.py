"""Label-free recovery: a compressed model learns the dense model's outputs on unlabelled inputs.

`distill_(student, teacher, inputs, steps=...)` trains the compressed student, in place, to match the
teacher's output distribution (KL at a temperature) on the calibration inputs, each step on one batch
passed through `augment` when given, the teacher seeing the very same augmented batch (function
matching: Beyer et al., "Knowledge distillation: a good teacher is patient and consistent", 2022).
Optional feature matching adds the mean squared difference of named modules' outputs.

The student keeps what compression gave it: a weight with at most 2^16 - 1 distinct nonzero values is
trained as shared weights (its symbols fixed, each centroid receiving the sum of its members'
gradients, the paper's centroid fine-tuning; zeros stay zero), any other compressible weight with
zeros under a pruning mask; biases and norm parameters train freely; BatchNorm statistics stay fixed
(the student runs in eval mode). At the end the parametrizations are baked in: what `encode` stores
has the same zeros and at most the same number of values per layer.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vidcompress.attach import attach, bake_all, own_items
from vidcompress.calibrate.stats import Forward, as_batches, default_forward
from vidcompress.errors import ConfigError, InputError, check_module
from vidcompress.io import atomic_path
from vidcompress.layers import module_layers, weight_sites
from vidcompress.progress import progress as progress_lines
from vidcompress.prune.masks import set_mask
from vidcompress.quantize.sharing import SharedWeights, WeightSharing

MAX_SHARED_LEVELS = (1 << 16) - 1
CHECKPOINT_VERSION = 1


@dataclass
class DistillReport:
    steps: int  # steps taken in all, a resumed run's earlier ones included
    losses: list[float]  # per step taken in this call: KL (+ feature term)
    shared_layers: list[str] = field(default_factory=list)
    masked_layers: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "steps": self.steps, "losses": self.losses, "shared_layers": self.shared_layers,
            "masked_layers": self.masked_layers, "seconds": self.seconds,
        }  # fmt: skip


def _hold_compression(student: nn.Module) -> tuple[list[str], list[str]]:
    """Attach weight sharing (few distinct values) or a pruning mask (zeros) to each compressible weight."""
    sites = weight_sites(student)
    shared, masked = [], []
    for layer in module_layers(student, include_refused=False):
        first = sites[layer.name][0]
        if own_items(first.module, first.attribute):
            raise ConfigError(f"{layer.name}: already has vidcompress parametrizations; finalize_(student) first")
        weight = getattr(first.module, first.attribute).detach()
        if not weight.is_floating_point():
            continue
        values = torch.unique(weight[weight != 0])
        if 0 < values.numel() <= MAX_SHARED_LEVELS and values.numel() <= weight.numel() // 4:
            bits = max(1, math.ceil(math.log2(values.numel() + 1)))
            codebook = torch.zeros(1 << bits, dtype=weight.dtype)
            codebook[1 : values.numel() + 1] = values
            codebook[values.numel() + 1 :] = values[-1]
            symbols = torch.where(weight != 0, torch.searchsorted(values, weight) + 1, 0).to(torch.int64)
            attach(sites[layer.name], WeightSharing(SharedWeights(codebook, symbols, bits, 0.0), "sum"))
            shared.append(layer.name)
        elif bool((weight == 0).any()):
            set_mask(sites[layer.name], weight != 0)
            masked.append(layer.name)
    return shared, masked


class _Features:
    """Forward hooks keeping the outputs of named modules for feature matching."""

    def __init__(self, model: nn.Module, names: Sequence[str]) -> None:
        self.outputs: dict[str, torch.Tensor] = {}
        self.handles = []
        modules = dict(model.named_modules())
        for name in names:
            if name not in modules:
                raise ConfigError(f"feature {name!r}: no such module (e.g. {', '.join(list(modules)[1:4])})")
            self.handles.append(modules[name].register_forward_hook(self._keep(name)))

    def _keep(self, name: str) -> Callable[..., None]:
        def hook(_module: nn.Module, _args: Any, output: Any) -> None:
            self.outputs[name] = output if isinstance(output, torch.Tensor) else output[0]

        return hook

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


def distill_(
    student: nn.Module,
    teacher: nn.Module,
    inputs: Any,
    *,
    steps: int,
    lr: float = 1e-4,
    temperature: float = 2.0,
    augment: Callable[[Any, torch.Generator], Any] | None = None,
    features: Sequence[str] = (),
    feature_weight: float = 1.0,
    logits: Callable[[Any], torch.Tensor] | None = None,
    forward: Forward | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    checkpoint_every: int = 10,
    progress: bool = False,
    seed: int = 0,
) -> DistillReport:
    """Train `student` (a compressed copy of `teacher`) to match the teacher's outputs on `inputs`.

    Args:
        inputs: the calibration batches (as for `calibrate_`); step i uses batch i mod len(inputs).
        steps: optimizer steps (Adam at `lr`).
        temperature: of the softened distributions; the KL is scaled by its square.
        augment: `augment(batch, generator)` -> the batch both models see this step.
        features: names of modules whose outputs the student also matches (mean squared difference,
            times `feature_weight`).
        logits: picks the logits out of the model's output (default: the output itself, or `.logits`).
        checkpoint: a file kept every `checkpoint_every` steps; if it exists, training resumes from it.
    Returns the report; the student ends in eval mode with its parametrizations baked in.
    """
    check_module(student, "student")
    check_module(teacher, "teacher")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"steps {steps!r}: must be an integer of at least 1")
    if not lr > 0 or not temperature > 0:
        raise ConfigError(f"lr {lr!r} and temperature {temperature!r}: must be positive")
    batches = as_batches(inputs)
    forward = forward or default_forward
    pick = logits or _default_logits
    start = time.perf_counter()
    shared, masked = _hold_compression(student)
    teacher.eval()
    student.eval()  # BatchNorm statistics and dropout as in inference; parameters still train
    parameters = [p for p in student.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(parameters, lr=lr)
    generator = torch.Generator().manual_seed(seed)
    done = 0
    path = Path(checkpoint) if checkpoint is not None else None
    if path is not None and path.exists():
        done = _resume(path, student, optimizer, generator)
    student_features = _Features(student, features)
    teacher_features = _Features(teacher, features)
    losses: list[float] = []
    try:
        for step in progress_lines(range(done, steps), "distill", "step", progress):
            batch = batches[step % len(batches)]
            if augment is not None:
                batch = augment(batch, generator)
            with torch.no_grad():
                target = F.log_softmax(pick(forward(teacher, batch)).float() / temperature, -1)
            out = F.log_softmax(pick(forward(student, batch)).float() / temperature, -1)
            loss = F.kl_div(out, target, log_target=True, reduction="batchmean") * temperature**2
            for name in features:
                loss = loss + feature_weight * F.mse_loss(
                    student_features.outputs[name].float(), teacher_features.outputs[name].detach().float()
                )
            if not bool(torch.isfinite(loss)):
                raise InputError(f"distill_: the loss of step {step} is {float(loss)}; try a lower lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
            if path is not None and ((step + 1) % checkpoint_every == 0 or step + 1 == steps):
                _save(path, student, optimizer, generator, step + 1)
    finally:
        student_features.close()
        teacher_features.close()
        bake_all(student)
    return DistillReport(steps, losses, shared, masked, time.perf_counter() - start)


def _default_logits(output: Any) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    value = getattr(output, "logits", None)
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(output, tuple | list) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise InputError(f"distill_: cannot find the logits in a {type(output).__name__}; pass logits=...")


def _save(
    path: Path, student: nn.Module, optimizer: torch.optim.Optimizer, generator: torch.Generator, step: int
) -> None:
    state = {
        "version": CHECKPOINT_VERSION, "step": step, "student": student.state_dict(),
        "optimizer": optimizer.state_dict(), "generator": generator.get_state(),
    }  # fmt: skip
    with atomic_path(path) as temporary:
        torch.save(state, temporary)


def _resume(path: Path, student: nn.Module, optimizer: torch.optim.Optimizer, generator: torch.Generator) -> int:
    try:
        state = torch.load(path, weights_only=True)  # tensors and plain containers only: never code
    except Exception as error:
        raise InputError(f"{path}: not a distillation checkpoint ({type(error).__name__}: {error})") from None
    if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
        raise InputError(f"{path}: not a distillation checkpoint of this vidcompress")
    try:
        student.load_state_dict(state["student"])
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as error:
        raise InputError(f"{path}: does not fit this student ({error})") from None
    generator.set_state(state["generator"])
    return int(state["step"])
