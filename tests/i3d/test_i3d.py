"""The I3D example: the conversion fills every tensor, SAME padding matches TF's, and the dense model
recognises the labelled clips (slow; skipped without the fixtures)."""

from __future__ import annotations

import pytest
import torch

from examples.i3d.evaluate import View, compare
from examples.i3d.model import I3D, flax_name, same_padding
from examples.real import is_available


def test_same_padding_is_tf_s() -> None:
    # TF SAME: out = ceil(in / stride); padding total split with the extra element after.
    assert same_padding((64, 224, 224), (7, 7, 7), (2, 2, 2)) == [2, 3, 2, 3, 2, 3]
    assert same_padding((8, 7, 7), (3, 3, 3), (1, 1, 1)) == [1, 1, 1, 1, 1, 1]
    assert same_padding((15, 56, 56), (3, 3, 3), (2, 2, 2)) == [0, 1, 0, 1, 1, 1]


def test_every_tensor_has_a_checkpoint_path_and_the_counts_are_the_paper_s() -> None:
    model = I3D()
    names = [n for n in model.state_dict() if not n.endswith("num_batches_tracked")]
    paths = {flax_name(n) for n in names}
    assert len(paths) == len(names)  # one checkpoint array per tensor, none shared
    assert sum(isinstance(m, torch.nn.Conv3d) for m in model.modules()) == 58
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 1) == 12.7


def test_compare_counts_agreement_and_kl() -> None:
    dense = torch.tensor([[5.0, 0.0], [0.0, 5.0]])
    views = [View("a", "centre", 0), View("b", "centre", None)]
    same = compare(dense, dense, views)
    assert same["agreement"] == 1.0 and same["kl"] == pytest.approx(0.0) and same["top1_labelled"] == 1.0
    flipped = compare(dense, dense.flip(1), views)
    assert flipped["agreement"] == 0.0 and flipped["kl"] > 4 and flipped["top1_labelled"] == 0.0


@pytest.mark.slow
@pytest.mark.skipif(not (is_available("i3d") and is_available("clips")), reason="fixtures i3d, clips not cached")
def test_dense_i3d_recognises_the_labelled_clips() -> None:
    from examples.i3d.clips import load_clips, prepare
    from examples.i3d.convert import pretrained_i3d

    model = pretrained_i3d()
    assert model(torch.zeros(1, 3, 16, 224, 224)).shape == (1, 400)
    labelled = [clip for clip in load_clips() if clip.label is not None]
    assert len(labelled) == 4
    with torch.no_grad():
        predicted = [int(model(prepare(clip.frames)[None]).argmax(1)) for clip in labelled]
    assert predicted == [clip.label for clip in labelled]  # both SoccerJuggling clips, the cartwheel, the dunk
