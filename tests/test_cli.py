import json

import pytest
import torch
from click.testing import CliRunner
from models import R3D18Like

from vidcompress.cli import main
from vidcompress.io import load_state_dict, save_state_dict
from vidcompress.metadata import read_stages


@pytest.fixture()
def weights(tmp_path):
    path = tmp_path / "model.safetensors"
    save_state_dict(R3D18Like().state_dict(), path)
    return path


def run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_prune_then_inspect(weights, tmp_path) -> None:
    out = tmp_path / "pruned.safetensors"
    result = run("prune", weights, "-o", out, "--sparsity", "conv=0.9,fc=0.95,layers.3.*=0.8")
    assert result.exit_code == 0, result.output
    tensors, metadata = load_state_dict(out)
    stages = read_stages(metadata)
    assert stages["prune"]["sparsity"]["conv1.weight"] == 0.9
    assert stages["prune"]["sparsity"]["layers.3.conv1.weight"] == 0.8
    model = R3D18Like()
    model.load_state_dict(tensors)  # loads into the original architecture

    result = run("inspect", out, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    layers = {layer["name"]: layer for layer in report["layers"]}
    assert layers["fc.weight"]["sparsity"] == pytest.approx(0.95, abs=0.01)
    assert layers["conv1.weight"]["kind"] == "conv"
    assert "bn1.weight" in layers and layers["bn1.weight"]["kind"] == "other"
    assert report["totals"]["file_bytes"] == out.stat().st_size

    table = run("inspect", out)
    assert table.exit_code == 0 and "| conv1.weight |" in table.output and "bn1" not in table.output


def test_prune_reads_pt_files(tmp_path) -> None:
    torch.save({"state_dict": R3D18Like().state_dict()}, tmp_path / "ckpt.pth")
    result = run("prune", tmp_path / "ckpt.pth", "-o", tmp_path / "out.safetensors")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("command", ["prune", "inspect"])
def test_help(command: str) -> None:
    result = run(command, "--help")
    assert result.exit_code == 0 and "Usage" in result.output


def _error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.strip().splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0]


def test_cli_errors_write_nothing(weights, tmp_path) -> None:
    out = tmp_path / "out.safetensors"
    _error(run("prune", tmp_path / "missing.safetensors", "-o", out), "missing.safetensors", "no such file")
    empty = tmp_path / "empty.pt"
    torch.save({"epoch": 3}, empty)
    _error(run("prune", empty, "-o", out), "empty.pt", "holds no tensors")
    _error(run("prune", weights, "-o", out, "--sparsity", "conv:0.9"), "conv:0.9", "PATTERN=VALUE")
    _error(run("prune", weights, "-o", out, "--sparsity", "conv=2"), "must be in [0, 1)")
    _error(run("prune", weights, "-o", out, "--sparsity", "layer9.*=0.5"), "layer9.*", "matches no")
    _error(run("prune", weights, "-o", weights), "same file as the input")
    _error(run("inspect", tmp_path / "missing.safetensors"), "no such file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.pt", "model.safetensors"]


def test_existing_output_needs_force(weights, tmp_path) -> None:
    out = tmp_path / "out.safetensors"
    out.write_bytes(b"keep me")
    _error(run("prune", weights, "-o", out), "exists; pass --force")
    assert out.read_bytes() == b"keep me"
    assert run("prune", weights, "-o", out, "--force").exit_code == 0
    assert out.read_bytes() != b"keep me"


def test_piped_compress_reports_progress_on_stderr_before_its_result(tmp_path) -> None:
    """Off a terminal (a log, CI, `| tee`) long steps still say where they are; -q silences them."""
    import subprocess
    import sys

    weights = tmp_path / "small.safetensors"
    save_state_dict({"conv.weight": torch.randn(32, 16, 3, 3), "fc.weight": torch.randn(10, 128)}, weights)
    out = tmp_path / "model.vcz"
    small = ["--target-ratio", "8", "--sparsities", "0,0.5", "--bits", "2-4"]  # a small grid: a quick run
    command = [sys.executable, "-m", "vidcompress.cli", "compress", str(weights), *small, "-o", str(out)]
    piped = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=True)
    progress = [line for line in piped.stdout.splitlines() if line.startswith("candidates: ")]
    assert progress and progress[0].startswith("candidates: 0/") and "done in" in progress[-1]
    assert piped.stdout.index("candidates: 0/") < piped.stdout.index(f"wrote {out}")
    quiet = CliRunner().invoke(main, ["-q", "compress", str(weights), *small, "-o", str(out), "--force"])
    assert quiet.exit_code == 0 and quiet.stderr == ""
