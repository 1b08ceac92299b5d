"""A size budget from calibration inputs: in the API (`compress_to_budget(..., calibration=)`) and on
the command line (`compress --model MODULE:CALLABLE --calibration inputs.safetensors`)."""

from __future__ import annotations

import textwrap

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file
from torch import nn

from vidcompress.budget import BudgetConfig, compress_to_budget
from vidcompress.calibrate.budget import MEASURE
from vidcompress.cli import main
from vidcompress.codec import load_compressed
from vidcompress.errors import ConfigError
from vidcompress.io import save_state_dict

MODEL_SOURCE = textwrap.dedent(
    """
    import torch
    from torch import nn


    def build():
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2), nn.ReLU(),
            nn.Flatten(), nn.Linear(16 * 7 * 7, 10),
        )
    """
)


def _build() -> nn.Module:
    namespace: dict = {}
    exec(compile(MODEL_SOURCE, "calib_model", "exec"), namespace)
    return namespace["build"]().eval()


def _batches() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    return [torch.randn(8, 3, 16, 16, generator=generator) for _ in range(3)]


def test_a_calibrated_budget_meets_the_target_with_the_solvers_weights(tmp_path) -> None:
    model = _build()
    dense = {k: v.clone() for k, v in model.state_dict().items()}
    grid = BudgetConfig(sparsities=(0.0, 0.5, 0.8), bits=(2, 4, 6))
    allocation, container = compress_to_budget(model, tmp_path / "m.vcz", "9kB", grid, calibration=_batches())
    assert container.file_bytes <= 9000 and allocation.damage_measure == MEASURE
    assert all(torch.equal(v, dense[k]) for k, v in model.state_dict().items())  # the caller's model untouched
    loaded = load_compressed(tmp_path / "m.vcz", _build())
    for layer in allocation.layers:
        weight = loaded.state_dict()[layer.name]
        assert torch.unique(weight[weight != 0]).numel() <= layer.chosen.levels
        assert 0 <= layer.chosen.damage < 1
    with torch.no_grad():
        x = _batches()[0]
        assert float((loaded(x) - model(x)).pow(2).mean() / model(x).pow(2).mean()) < 0.5


def test_calibration_needs_the_model_and_goes_alone(tmp_path) -> None:
    model = _build()
    with pytest.raises(ConfigError, match="needs the model itself"):
        compress_to_budget(model.state_dict(), tmp_path / "m.vcz", "9kB", calibration=_batches())
    with pytest.raises(ConfigError, match="give it alone"):
        compress_to_budget(model, tmp_path / "m.vcz", "9kB", calibration=_batches(), importance={})
    assert not (tmp_path / "m.vcz").exists()


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A user's folder: their model's code, its weights and a calibration file."""
    (tmp_path / "calib_model.py").write_text(MODEL_SOURCE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    save_state_dict(_build().state_dict(), tmp_path / "weights.safetensors")
    save_file({"images": torch.cat(_batches())}, str(tmp_path / "inputs.safetensors"))
    return tmp_path


GRID = ("--sparsities", "0,0.5,0.8", "--bits", "2,4,6")  # a small grid: a fast test


def _compress(*extra: str):
    arguments = ["compress", "weights.safetensors", "--target-size", "9kB", *GRID, "-o", "out.vcz", *extra]
    return CliRunner().invoke(main, arguments)


def test_the_command_line_compresses_with_calibration(project) -> None:
    result = _compress("--model", "calib_model:build", "--calibration", "inputs.safetensors", "--batch-size", "8")
    assert result.exit_code == 0, result.output
    assert "output error on the calibration inputs" in result.output
    assert (project / "out.vcz").stat().st_size <= 9000


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--calibration", "inputs.safetensors"), "--model and --calibration go together"),
        (("--model", "calib_model:nothing", "--calibration", "inputs.safetensors"), "has no callable 'nothing'"),
        (("--model", "no_such_module:build", "--calibration", "inputs.safetensors"), "cannot import no_such_module"),
        (("--model", "calib_model", "--calibration", "inputs.safetensors"), "expected MODULE:CALLABLE"),
        (("--model", "calib_model:build", "--calibration", "missing.safetensors"), "no such calibration file"),
        (
            ("--model", "calib_model:build", "--calibration", "wrong.safetensors"),
            "calibration batch 0: 0.weight: input of shape",
        ),
        (("--model", "calib_model:build", "--calibration", "weights.safetensors"), "does not fit the model"),
    ],
    ids=["no model", "no callable", "no module", "no colon", "missing file", "wrong inputs", "not inputs"],
)
def test_bad_calibration_arguments_are_one_error_line_and_nothing_written(project, extra, message) -> None:
    save_file({"images": torch.randn(4, 5, 16, 16)}, str(project / "wrong.safetensors"))
    if "weights.safetensors" in extra:  # weights of another model where the model's are expected
        save_state_dict({"0.weight": torch.randn(2, 2)}, project / "weights.safetensors")
    result = _compress(*extra)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], result.output
    assert not (project / "out.vcz").exists()
