"""Post-training compression from a few unlabelled inputs: calibration statistics, SparseGPT / GPTQ
layer solvers onto vidcompress's codebooks, BatchNorm re-estimation and label-free distillation."""

from vidcompress.calibrate.api import CalibrateConfig, CalibrateReport, LayerCalibration, calibrate_
from vidcompress.calibrate.bn import recalibrate_bn_
from vidcompress.calibrate.distill import DistillReport, distill_

__all__ = [
    "CalibrateConfig", "CalibrateReport", "DistillReport", "LayerCalibration", "calibrate_", "distill_",
    "recalibrate_bn_",
]  # fmt: skip
