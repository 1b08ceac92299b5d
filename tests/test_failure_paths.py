"""Every failure of a writing verb is one `error:` line and exit 2, with no traceback, and leaves
every file as it was: a matrix over the verbs and the ways a run can fail (bad values, bad paths,
unwritable folders, a full disk, non-finite weights). Degenerate but legal weights (an all-zero
layer, a zero-size tensor) pass through every verb exactly."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from vidcompress import encode, load_compressed
from vidcompress.budget import compress_to_budget
from vidcompress.cli import main
from vidcompress.codec import decode
from vidcompress.io import load_state_dict, save_state_dict
from vidcompress.prune import prune_, prune_state_dict
from vidcompress.quantize import quantize_, quantize_state_dict

WRITERS = {  # verb -> its arguments after IN (the output comes from the case)
    "prune": ["--sparsity", "0.5"],
    "quantize": ["--bits", "4"],
    "encode": [],
    "compress": ["--target-ratio", "4"],
    "decode": [],
}
SUFFIX = {
    "prune": ".safetensors",
    "quantize": ".safetensors",
    "encode": ".vcz",
    "compress": ".vcz",
    "decode": ".safetensors",
}


def _weights() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {
        "conv.weight": torch.randn(16, 8, 3, 3),
        "conv.bias": torch.randn(16),
        "fc.weight": torch.randn(10, 64),
        "fc.bias": torch.randn(10),
    }


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    """A working folder with a weights file, its quantized form, a container and a previous output of
    every verb (which a failed run must leave alone)."""
    weights = _weights()
    save_state_dict(weights, tmp_path / "model.safetensors")
    quantized, _ = quantize_state_dict(weights, "4")
    save_state_dict(quantized, tmp_path / "quantized.safetensors")
    encode(quantized, tmp_path / "model.vcz")
    for verb in WRITERS:
        (tmp_path / f"previous{SUFFIX[verb]}").write_bytes(b"an earlier result")
    return tmp_path


def _input(folder: Path, verb: str) -> Path:
    return folder / {"decode": "model.vcz", "encode": "quantized.safetensors"}.get(verb, "model.safetensors")


def _snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` (hidden ones too) with a hash of its bytes."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def _fails_cleanly(folder: Path, args: list[str], before: dict[str, str] | None = None) -> str:
    before = _snapshot(folder) if before is None else before
    result = CliRunner().invoke(main, [str(a) for a in args])
    stderr = result.stderr.strip().splitlines()
    assert result.exit_code == 2, (args, result.output, result.exception)
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    assert [line for line in stderr if line.startswith("error:")] == stderr[-1:], stderr
    assert _snapshot(folder) == before, "a failed run changed or left a file"
    return stderr[-1]


def _case_args(folder: Path, verb: str, case: str) -> list[str]:
    suffix = SUFFIX[verb]
    out = folder / f"out{suffix}"
    cases = {
        "output exists": [folder / f"previous{suffix}"],
        "output under a file": [folder / "model.safetensors" / f"x{suffix}"],
        "output folder missing": [folder / "nowhere" / f"x{suffix}"],
        "output is the input": [_input(folder, verb)] if _input(folder, verb).suffix == suffix else [out, "--force"],
        "output is a folder": [folder],
        "wrong output suffix": [folder / "out.txt"],
        "disk full": [out],
        "folder not writable": [out],
    }
    return [verb, _input(folder, verb), *WRITERS[verb], "-o", *cases[case]]


CASES = [
    "output exists",
    "output under a file",
    "output folder missing",
    "output is the input",
    "output is a folder",
    "wrong output suffix",
    "disk full",
    "folder not writable",
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("verb", list(WRITERS))
def test_a_failed_write_is_one_line_and_changes_nothing(
    folder: Path, verb: str, case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = _case_args(folder, verb, case)
    if case == "output is the input" and args[-1] == "--force":
        pytest.skip(f"{verb} reads a different kind of file than it writes")
    before = _snapshot(folder)
    if case == "disk full":  # the file system reports it when the data is synced, as delayed allocation does

        def full(descriptor: int) -> None:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(os, "fsync", full)
    if case == "folder not writable":  # root ignores permission bits: refuse the temporary file instead
        import tempfile

        def refused(*args: object, **kwargs: object) -> None:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

        monkeypatch.setattr(tempfile, "mkstemp", refused)
    message = _fails_cleanly(folder, args, before)
    expected = {
        "output exists": "exists; pass --force",
        "output under a file": "is a file, not a folder",
        "output folder missing": "output folder does not exist",
        "output is the input": "same file as the input",
        "output is a folder": "is a directory",
        "wrong output suffix": "name the output",
        "disk full": "no space left on the device; nothing was changed",
        "folder not writable": "is not writable",
    }[case]
    assert expected in message
    assert "force=True" not in message


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
@pytest.mark.parametrize("verb", list(WRITERS))
def test_a_read_only_folder_is_refused_before_any_work(folder: Path, verb: str) -> None:
    out_folder = folder / "read-only"
    out_folder.mkdir()
    out_folder.chmod(0o555)
    try:
        args = [verb, _input(folder, verb), *WRITERS[verb], "-o", out_folder / f"x{SUFFIX[verb]}"]
        assert "not writable" in _fails_cleanly(folder, args)
    finally:
        out_folder.chmod(0o755)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--report", "nodir/r.md"], "output folder does not exist"),
        (["--plot", "nodir/p.png"], "output folder does not exist"),
        (["--report", "r.txt"], "name it *.md"),
        (["--report", "previous.vcz"], "name it *.md"),
        (["--report", "model.safetensors/r.md"], "is a file, not a folder"),
        (["--plot", "model.safetensors/p.png"], "is a file, not a folder"),
    ],
)
def test_compress_checks_its_report_and_plot_paths_before_any_work(
    folder: Path, extra: list[str], expected: str
) -> None:
    """The container is not replaced, although --force allows it, when a side output cannot be written."""
    args = ["compress", folder / "model.safetensors", "--target-ratio", "4", "-o", folder / "previous.vcz", "--force"]
    message = _fails_cleanly(folder, [*args, *[folder / a if "/" in a or "." in a else a for a in extra]])
    assert expected in message


def test_compress_writes_nothing_when_the_report_cannot_be_renamed(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure after the container is written (the report's rename) leaves the old container."""
    import vidcompress.io as io

    real = os.replace

    def replace(source: str, target: str) -> None:
        if str(target).endswith(".md"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(source, target)

    monkeypatch.setattr(io.os, "replace", replace)
    args = ["compress", folder / "model.safetensors", "--target-ratio", "4", "-o", folder / "previous.vcz", "--force"]
    assert "no space left" in _fails_cleanly(folder, [*args, "--report", folder / "r.md"])


def test_quantize_checks_its_plot_folder_before_any_work(folder: Path) -> None:
    args = ["quantize", folder / "model.safetensors", "--bits", "4", "-o", folder / "out.safetensors"]
    assert "is a file, not a folder" in _fails_cleanly(folder, [*args, "--plots", folder / "model.safetensors" / "p"])
    assert "is a file" in _fails_cleanly(folder, [*args, "--plots", folder / "model.safetensors"])
    (folder / "plots").mkdir()
    (folder / "plots" / "old.png").write_bytes(b"png")
    assert "not empty; pass --force" in _fails_cleanly(folder, [*args, "--plots", folder / "plots"])


@pytest.mark.parametrize(
    ("verb", "options", "expected"),
    [
        ("prune", ["--sparsity", "1.5"], "1.5"),
        ("prune", ["--sparsity", "-0.1"], "-0.1"),
        ("prune", ["--sparsity", "nan"], "nan"),
        ("prune", ["--sparsity", "conv=0.5,,fc=0.2"], "empty rule"),
        ("quantize", ["--bits", "0"], "0"),
        ("quantize", ["--bits", "17"], "17"),
        ("quantize", ["--bits", "4.5"], "4.5"),
        ("encode", ["--index-bits", "0"], "0"),
        ("compress", ["--target-ratio", "4", "--bits", "0"], "bits"),
        ("compress", ["--target-size", "-5MB"], "5MB"),
    ],
)
def test_bad_values_say_what_is_wrong(folder: Path, verb: str, options: list[str], expected: str) -> None:
    out = folder / f"out{SUFFIX[verb]}"
    message = _fails_cleanly(folder, [verb, _input(folder, verb), *options, "-o", out])
    assert expected in message
    if "=" not in options[-1] and options[0] in ("--sparsity", "--bits", "--index-bits"):
        assert "expected PATTERN=VALUE" not in message  # a bare value is valid: the message says the range


@pytest.mark.parametrize("verb", ["prune", "quantize", "encode", "compress"])
def test_non_finite_weights_are_refused_by_name(folder: Path, verb: str) -> None:
    weights = _weights()
    weights["fc.weight"][0, 0] = float("nan")
    weights["fc.weight"][1, 1] = float("inf")
    save_state_dict(weights, folder / "nan.safetensors")
    args = [verb, folder / "nan.safetensors", *WRITERS[verb], "-o", folder / f"out{SUFFIX[verb]}"]
    if verb == "encode":
        args += ["--bits", "raw"]
    message = _fails_cleanly(folder, args)
    assert message.startswith("error: fc.weight:") and "NaN or inf" in message


def test_inspect_and_diff_count_non_finite_values(folder: Path) -> None:
    weights = _weights()
    weights["fc.weight"][0, :3] = float("nan")
    save_state_dict(weights, folder / "nan.safetensors")
    inspected = CliRunner().invoke(main, ["inspect", str(folder / "nan.safetensors")])
    assert inspected.exit_code == 0 and "non-finite values" in inspected.output and "fc.weight (3)" in inspected.output
    compared = CliRunner().invoke(main, ["diff", str(folder / "model.safetensors"), str(folder / "nan.safetensors")])
    assert compared.exit_code == 0 and "fc.weight (A 0, B 3)" in compared.output


@pytest.mark.parametrize("what", ["missing", "folder", "pickle"])
@pytest.mark.parametrize("verb", list(WRITERS))
def test_bad_inputs_are_one_line(folder: Path, verb: str, what: str) -> None:
    source = {"missing": folder / "absent.safetensors", "folder": folder, "pickle": folder / "code.pt"}[what]
    if what == "pickle":

        class Payload:
            def __reduce__(self):  # never run: the file is refused before it is unpickled
                return (os.system, ("touch pwned",))

        torch.save({"x": Payload()}, source)
    message = _fails_cleanly(folder, [verb, source, *WRITERS[verb], "-o", folder / f"out{SUFFIX[verb]}"])
    assert {"missing": "no such file", "folder": "is a directory", "pickle": str(source.name)}[what] in message
    assert not (Path.cwd() / "pwned").exists()


# Degenerate but legal weights ------------------------------------------------------------------


def _degenerate() -> dict[str, torch.Tensor]:
    weights = _weights()
    weights["lora_B.weight"] = torch.zeros(64, 16)  # zero at initialisation, as LoRA's B is
    weights["empty.weight"] = torch.zeros(0, 16)
    weights["zero_conv.weight"] = torch.zeros(8, 8, 1, 1)  # ControlNet's zero convolutions
    return weights


@pytest.mark.parametrize("verb", ["prune", "quantize", "encode", "compress"])
def test_all_zero_and_zero_size_layers_pass_through_exactly(tmp_path: Path, verb: str) -> None:
    weights = _degenerate()
    save_state_dict(weights, tmp_path / "model.safetensors")
    out = tmp_path / f"out{SUFFIX[verb]}"
    args = [verb, tmp_path / "model.safetensors", *WRITERS[verb], "-o", out]
    if verb == "encode":
        args += ["--bits", "raw"]
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    if out.suffix == ".vcz":
        decoded = CliRunner().invoke(main, ["decode", str(out), "-o", str(tmp_path / "decoded.safetensors")])
        assert decoded.exit_code == 0, decoded.output
        out = tmp_path / "decoded.safetensors"
    back, _ = load_state_dict(out)
    for name in ("lora_B.weight", "empty.weight", "zero_conv.weight"):
        assert back[name].shape == weights[name].shape and torch.equal(back[name], weights[name]), name


def test_an_all_zero_layer_quantizes_to_one_level_and_round_trips(tmp_path: Path) -> None:
    weights = _degenerate()
    quantized, report = quantize_state_dict(weights, "4")
    layers = {layer.name: layer for layer in report.layers}
    assert layers["lora_B.weight"].clusters == 0 and layers["empty.weight"].clusters == 0
    assert torch.equal(quantized["lora_B.weight"], weights["lora_B.weight"])
    encode(quantized, tmp_path / "q.vcz")
    decoded = decode(tmp_path / "q.vcz")
    assert all(torch.equal(decoded[name], quantized[name]) for name in quantized)


def test_two_encodes_of_one_input_are_byte_identical(tmp_path: Path) -> None:
    quantized, _ = quantize_state_dict(_weights(), "4")
    encode(quantized, tmp_path / "a.vcz")
    encode(quantized, tmp_path / "b.vcz")
    assert (tmp_path / "a.vcz").read_bytes() == (tmp_path / "b.vcz").read_bytes()


# The Python API: a wrong argument type names the argument ------------------------------------


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 4)


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda p: encode("str", p), "source"),  # type: ignore[arg-type]
        (lambda p: encode(None, p), "source"),  # type: ignore[arg-type]
        (lambda p: encode({"w": [1.0]}, p), "source"),  # type: ignore[dict-item]
        (lambda p: encode(_Net().state_dict(), None), "path"),  # type: ignore[arg-type]
        (lambda p: load_compressed(p, None), "model"),  # type: ignore[type-var]
        (lambda p: load_compressed(None, _Net()), "path"),  # type: ignore[arg-type]
        (lambda p: decode(3), "path"),  # type: ignore[arg-type]
        (lambda p: compress_to_budget("str", p, "1KB"), "source"),  # type: ignore[arg-type]
        (lambda p: quantize_state_dict(None, "4"), "tensors"),  # type: ignore[arg-type]
        (lambda p: prune_state_dict(None, "0.5"), "tensors"),  # type: ignore[arg-type]
        (lambda p: prune_(None, "0.5"), "model"),  # type: ignore[arg-type]
        (lambda p: quantize_(None, "4"), "model"),  # type: ignore[arg-type]
        (lambda p: load_state_dict(None), "path"),  # type: ignore[arg-type]
    ],
)
def test_api_type_errors_name_the_argument(tmp_path: Path, call, argument: str) -> None:
    path = tmp_path / "x.vcz"
    encode(_Net().state_dict(), path)
    before = _snapshot(tmp_path)
    with pytest.raises(TypeError, match=rf"^{argument}: expected"):
        call(path)
    assert _snapshot(tmp_path) == before


def test_prune_and_quantize_leave_a_model_with_nan_unchanged() -> None:
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))
    with torch.no_grad():
        model[2].weight[0, 0] = float("nan")
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    from vidcompress.errors import InputError

    with pytest.raises(InputError, match=r"^2\.weight: .*NaN or inf"):
        prune_(model, "0.5")
    with pytest.raises(InputError, match=r"^2\.weight: .*NaN or inf"):
        quantize_(model, "4")
    after = model.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[k], before[k]) or (after[k].isnan() == before[k].isnan()).all() for k in before)
