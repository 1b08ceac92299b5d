"""Post-training compression from a few unlabelled inputs: calibration statistics, SparseGPT / GPTQ
layer solvers onto vidcompress's codebooks, and BatchNorm re-estimation."""

from vidcompress.calibrate.api import CalibrateConfig, CalibrateReport, LayerCalibration, calibrate_
from vidcompress.calibrate.bn import recalibrate_bn_

__all__ = ["CalibrateConfig", "CalibrateReport", "LayerCalibration", "calibrate_", "recalibrate_bn_"]
