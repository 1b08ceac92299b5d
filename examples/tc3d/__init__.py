"""T-C3D (Liu et al.): a 3D ResNet-18 with temporal encoding over S clips, the reference model."""

from examples.tc3d.model import FUSIONS, R3D18, TC3D, build_tc3d, r3d18

__all__ = ["FUSIONS", "R3D18", "TC3D", "build_tc3d", "r3d18"]
