"""Regression tests for what a new user hit on real models: files, defaults, nonsense, bytes.

Each test names the case of the issue "Any real model, correctly" it pins.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from vidcompress import finalize_, prune_, quantize_
from vidcompress.cli import DEFAULT_BITS, DEFAULT_INDEX_BITS, DEFAULT_SPARSITY, PAPER_BITS, PAPER_SPARSITY, main
from vidcompress.codec import EncodeConfig, decode, encode, load_compressed, read_container, size_breakdown
from vidcompress.errors import InputError
from vidcompress.io import load_state_dict, save_state_dict
from vidcompress.layers import module_layers


def run(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


def _one_error_line(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.strip().splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


class Encoder(nn.Module):
    """A small transformer-ish model with an embedding, a positional buffer and linear layers."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(50, 16)
        self.register_buffer("pe", torch.randn(20, 1, 16))  # a float buffer of 3 dimensions
        self.proj = nn.Linear(16, 16)
        self.head = nn.Linear(16, 4)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embedding(ids) + self.pe[: ids.shape[1], 0]
        return self.head(torch.relu(self.proj(x))).mean(1)


@pytest.fixture()
def encoder_file(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "encoder.safetensors"
    save_state_dict(Encoder().state_dict(), path)
    return path


def test_cli_defaults_leave_embeddings_and_buffers_alone_and_say_what_they_do(encoder_file, tmp_path) -> None:
    out = tmp_path / "pruned.safetensors"
    result = run("prune", encoder_file, "-o", out)
    assert result.exit_code == 0, result.output
    assert f"no --sparsity given: using {DEFAULT_SPARSITY}" in result.output
    before, _ = load_state_dict(encoder_file)
    after, _ = load_state_dict(out)
    assert torch.equal(after["embedding.weight"], before["embedding.weight"])
    assert torch.equal(after["pe"], before["pe"])  # a buffer: never classed as a conv weight
    assert float((after["proj.weight"] == 0).float().mean()) == pytest.approx(0.3, abs=0.01)
    quantized = tmp_path / "q.safetensors"
    result = run("quantize", out, "-o", quantized)
    assert result.exit_code == 0 and f"no --bits given: using {DEFAULT_BITS}" in result.output
    assert torch.equal(load_state_dict(quantized)[0]["embedding.weight"], before["embedding.weight"])


def test_cli_constants_match_the_library() -> None:
    from vidcompress.codec import DEFAULT_INDEX_BITS as index_bits
    from vidcompress.prune.pruner import DEFAULT_SPARSITY as sparsity
    from vidcompress.prune.pruner import PAPER_SPARSITY as paper_sparsity
    from vidcompress.quantize.api import DEFAULT_BITS as bits
    from vidcompress.quantize.api import PAPER_BITS as paper_bits

    assert (
        sparsity,
        paper_sparsity,
        bits,
        paper_bits,
        index_bits,
    ) == (DEFAULT_SPARSITY, PAPER_SPARSITY, DEFAULT_BITS, PAPER_BITS, DEFAULT_INDEX_BITS)


def test_old_weight_norm_tensors_are_not_weights() -> None:
    model = nn.Sequential(nn.utils.weight_norm(nn.Linear(4, 4)), nn.Linear(4, 2))
    layers = {layer.name: layer for layer in module_layers(model)}
    assert "0.weight_g" not in layers and "0.weight_v" not in layers
    assert layers["0.weight"].refused and "weight_norm" in layers["0.weight"].refused
    from vidcompress.layers import state_dict_layers

    assert [layer.name for layer in state_dict_layers(model.state_dict())] == ["1.weight"]


def test_torch_prune_leftovers_are_folded_into_their_weight(tmp_path) -> None:
    import torch.nn.utils.prune

    model = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 2))
    torch.nn.utils.prune.l1_unstructured(model[0], "weight", amount=0.5)
    path = tmp_path / "legacy.safetensors"
    save_state_dict(model.state_dict(), path)
    out = tmp_path / "q.safetensors"
    result = run("quantize", path, "-o", out, "--bits", "fc=4")
    assert result.exit_code == 0, result.output
    assert "folded torch.nn.utils.prune leftovers" in result.output
    tensors, _ = load_state_dict(out)
    assert "0.weight_orig" not in tensors and "0.weight_mask" not in tensors
    assert torch.equal(tensors["0.weight"] == 0, model[0].weight == 0)
    nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 2)).load_state_dict(tensors)  # the plain architecture


@pytest.mark.parametrize("command", ["prune", "quantize", "encode"])
def test_a_container_is_refused_as_input(encoder_file, tmp_path, command: str) -> None:
    container = tmp_path / "m.vcz"
    encode(load_state_dict(encoder_file)[0], container)
    suffix = ".vcz" if command == "encode" else ".safetensors"
    out = tmp_path / f"out{suffix}"
    _one_error_line(run(command, container, "-o", out), "is a vidcompress container", "decode")
    assert not out.exists()


def test_a_file_with_nothing_compressible_is_refused(tmp_path) -> None:
    path = tmp_path / "ints.safetensors"
    save_state_dict({"counts": torch.arange(12).reshape(3, 4), "ids": torch.ones(5, dtype=torch.long)}, path)
    for command, suffix in (("prune", ".safetensors"), ("quantize", ".safetensors"), ("encode", ".vcz")):
        _one_error_line(run(command, path, "-o", tmp_path / f"o{suffix}"), "no compressible weight")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ints.safetensors"]


@pytest.mark.parametrize(("command", "output"), [("prune", "out.pt"), ("decode", "out.bin"), ("encode", "out.pt")])
def test_an_output_suffix_that_does_not_match_what_is_written_is_refused(encoder_file, tmp_path, command, output):
    source = encoder_file
    if command == "decode":
        source = tmp_path / "m.vcz"
        encode(load_state_dict(encoder_file)[0], source)
    _one_error_line(run(command, source, "-o", tmp_path / output), "name the output")
    assert not (tmp_path / output).exists()


def test_a_kind_rule_with_no_layer_of_that_kind_is_refused(encoder_file, tmp_path) -> None:
    _one_error_line(
        run("prune", encoder_file, "-o", tmp_path / "p.safetensors", "--sparsity", "conv=0.5"),
        "no conv layer",
    )
    with pytest.raises(Exception, match="no conv layer"):
        prune_(Encoder(), "conv=0.5")


def test_click_usage_errors_are_one_line(tmp_path) -> None:
    _one_error_line(run("prune"), "Missing argument")
    _one_error_line(run("prune", tmp_path / "x.safetensors", "-o", tmp_path / "y.safetensors", "--bogus"), "--bogus")
    _one_error_line(run("frobnicate"), "No such command")
    result = subprocess.run([sys.executable, "-m", "vidcompress.cli", "encode"], capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0 and result.stderr.startswith("error:")


def test_decoded_files_keep_format_pt_and_the_source_metadata(tmp_path) -> None:
    path = tmp_path / "m.safetensors"
    model = nn.Sequential(nn.Linear(6, 6), nn.Linear(6, 2))
    prune_(model, "fc=0.5")
    quantize_(model, "fc=4")
    finalize_(model)
    save_state_dict(model.state_dict(), path, {"format": "pt", "author": "someone"})
    assert run("encode", path, "-o", tmp_path / "m.vcz").exit_code == 0
    assert run("decode", tmp_path / "m.vcz", "-o", tmp_path / "d.safetensors").exit_code == 0
    _, metadata = load_state_dict(tmp_path / "d.safetensors")
    assert metadata["format"] == "pt" and metadata["author"] == "someone"


def test_transformers_loads_a_decoded_file(tmp_path) -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        vocab_size=60, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=24
    )
    model = transformers.BertModel(config).eval()
    folder = tmp_path / "bert"
    model.save_pretrained(folder)
    source = folder / "model.safetensors"
    assert run("prune", source, "-o", tmp_path / "p.safetensors", "--sparsity", "fc=0.5").exit_code == 0
    assert run("quantize", tmp_path / "p.safetensors", "-o", tmp_path / "q.safetensors").exit_code == 0
    assert run("encode", tmp_path / "q.safetensors", "-o", tmp_path / "m.vcz").exit_code == 0
    source.unlink()
    assert run("decode", tmp_path / "m.vcz", "-o", source).exit_code == 0
    reloaded = transformers.BertModel.from_pretrained(folder).eval()  # refused without format: pt
    expected, _ = load_state_dict(tmp_path / "q.safetensors")
    assert torch.equal(
        reloaded.state_dict()["encoder.layer.0.output.dense.weight"], expected["encoder.layer.0.output.dense.weight"]
    )


def test_written_files_get_the_users_umask(encoder_file, tmp_path) -> None:
    old = os.umask(0o022)
    try:
        out = tmp_path / "p.safetensors"
        assert run("prune", encoder_file, "-o", out).exit_code == 0
        assert stat.S_IMODE(out.stat().st_mode) == 0o644
        os.umask(0o077)
        assert run("encode", out, "-o", tmp_path / "m.vcz").exit_code == 0
        assert stat.S_IMODE((tmp_path / "m.vcz").stat().st_mode) == 0o600
    finally:
        os.umask(old)


def test_a_load_mismatch_lists_the_keys(tmp_path) -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    encode(model, tmp_path / "m.vcz")
    with pytest.raises(InputError, match=r"missing 2\.bias, 2\.weight; unexpected 1\.bias, 1\.weight"):
        load_compressed(tmp_path / "m.vcz", nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)))


def test_encode_takes_each_layers_bits_from_the_model() -> None:
    model = nn.Sequential(nn.Linear(30, 30), nn.Linear(30, 4))
    quantize_(model, "fc=8")
    finalize_(model)
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        container = encode(model, Path(folder) / "m.vcz")  # once failed: "255 distinct ... 2^5 - 1"
        assert {entry.bits for entry in container.layers} == {8}
        assert all(torch.equal(decode(container.path)[k], v) for k, v in model.state_dict().items())


def test_no_codebook_is_stored_twice(tmp_path) -> None:
    model = nn.Sequential(nn.Linear(64, 64), nn.Linear(64, 10))
    prune_(model, "fc=0.9")
    quantize_(model, "fc=5")
    finalize_(model)
    path = tmp_path / "q.safetensors"
    save_state_dict(model.state_dict(), path)
    assert run("quantize", path, "-o", tmp_path / "q2.safetensors", "--bits", "fc=5").exit_code == 0
    _, metadata = load_state_dict(tmp_path / "q2.safetensors")
    assert "codebook" not in metadata["vidcompress"]
    assert run("encode", tmp_path / "q2.safetensors", "-o", tmp_path / "m.vcz").exit_code == 0
    container = read_container(tmp_path / "m.vcz")
    assert 'codebook"' not in container.metadata.get("vidcompress", "")
    parts = size_breakdown(container)
    assert parts["provenance"] > 0 and parts["manifest"] > 0
    assert sum(v for k, v in parts.items() if k != "total") == parts["total"]


@pytest.mark.parametrize("zeros", [0, 3, 1000, 6000])
def test_light_pruning_never_makes_a_file_larger(tmp_path, zeros: int) -> None:
    generator = torch.Generator().manual_seed(0)
    codebook = torch.randn(255, generator=generator)
    weight = codebook[torch.randint(0, 255, (200, 300), generator=generator)]
    dense = encode({"layer.weight": weight}, tmp_path / "dense.vcz", EncodeConfig(bits="layer.weight=8"))
    flat = weight.reshape(-1).clone()
    flat[torch.randperm(flat.numel(), generator=generator)[:zeros]] = 0
    pruned = encode({"layer.weight": flat.view_as(weight)}, tmp_path / "p.vcz", EncodeConfig(bits="layer.weight=8"))
    assert pruned.file_bytes <= dense.file_bytes + 16  # a few bytes of manifest, never an index's bit a weight
    if 0 < zeros < 6000:  # with no zero at all, both layouts cost the same (a constant index stream)
        assert pruned.layers[0].layout == "dense"
    assert torch.equal(decode(tmp_path / "p.vcz")["layer.weight"], flat.view_as(weight))


def test_the_command_line_starts_without_torch() -> None:
    code = "import sys, vidcompress, vidcompress.cli; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
    from vidcompress import encode as lazy

    assert callable(lazy) and "load_sparse" in dir(__import__("vidcompress"))


def test_load_sparse_reports_what_runs_sparse_and_why(tmp_path) -> None:
    from vidcompress.kernels import load_sparse

    def build() -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Conv2d(3, 8, 3),
            nn.Conv2d(8, 8, 3, groups=4),
            nn.Conv2d(8, 8, 3, dilation=2),
            nn.Flatten(),
            nn.LazyLinear(5),
        )

    model = build()
    x = torch.randn(2, 3, 16, 16)
    model(x)
    prune_(model, "0.8")
    quantize_(model, "6")
    finalize_(model)
    encode(model, tmp_path / "m.vcz")
    fresh = build()
    fresh(x)
    sparse = load_sparse(tmp_path / "m.vcz", fresh, mode="sparse")
    report = {choice.name: choice for choice in sparse.sparse_report_}
    assert report["1.weight"].mode == "dense" and "groups=4" in report["1.weight"].reason
    assert report["2.weight"].mode == "sparse" and report["0.weight"].mode == "sparse"
    assert "| 1.weight | dense |" in sparse.sparse_report_.to_markdown()
    with torch.no_grad():
        assert torch.allclose(sparse(x), model(x), rtol=1e-5, atol=1e-6)
    probed = build()
    probed(x)
    probed = load_sparse(tmp_path / "m.vcz", probed)
    for choice in probed.sparse_report_:
        if choice.dense_ms is not None:
            assert (choice.mode == "sparse") == (choice.sparse_ms < choice.dense_ms)
    with torch.no_grad():
        assert torch.allclose(probed(x), model(x), rtol=1e-5, atol=1e-6)


def test_inspect_says_what_was_classed_as_what(encoder_file) -> None:
    result = run("inspect", encoder_file, "--json")
    layers = {layer["name"]: layer for layer in json.loads(result.output)["layers"]}
    assert layers["embedding.weight"]["kind"] == "emb" and layers["proj.weight"]["kind"] == "fc"
    assert layers["pe"]["kind"] == "other" and layers["pe"]["note"] == "not named as a weight"
    table = run("inspect", encoder_file).output
    assert "| pe | 20x1x16 | other (not named as a weight) |" in table
