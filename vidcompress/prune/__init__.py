"""Magnitude pruning: masks as parametrizations, schedules, DSD, sensitivity analysis."""

from vidcompress.prune.dsd import SPARSE_PHASE_SPARSITY, DSDConfig, DSDHistory, EpochRecord, run_dsd
from vidcompress.prune.magnitude import magnitude_mask, pruned_count
from vidcompress.prune.masks import PruningMask, get_mask, remove_mask, set_mask
from vidcompress.prune.pruner import (
    DEFAULT_SPARSITY,
    PAPER_SPARSITY,
    PruneConfig,
    Pruner,
    layer_sparsity,
    overall_sparsity,
    prune_,
    prune_state_dict,
)
from vidcompress.prune.schedules import (
    AGPSchedule,
    ConstantSchedule,
    Schedule,
    StepSchedule,
    parse_schedule,
)
from vidcompress.prune.sensitivity import SensitivityReport, sensitivity_analysis

__all__ = [
    "DEFAULT_SPARSITY",
    "PAPER_SPARSITY",
    "SPARSE_PHASE_SPARSITY",
    "AGPSchedule",
    "ConstantSchedule",
    "DSDConfig",
    "DSDHistory",
    "EpochRecord",
    "PruneConfig",
    "Pruner",
    "PruningMask",
    "Schedule",
    "SensitivityReport",
    "StepSchedule",
    "get_mask",
    "layer_sparsity",
    "magnitude_mask",
    "overall_sparsity",
    "parse_schedule",
    "prune_",
    "prune_state_dict",
    "pruned_count",
    "remove_mask",
    "run_dsd",
    "sensitivity_analysis",
    "set_mask",
]
