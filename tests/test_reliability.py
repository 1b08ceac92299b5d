"""Hostile files, interrupted work and odd inputs: every case ends in the package's own error."""

import base64
import contextlib
import json
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from models import R3D18Like, mlp

from vidcompress import prune_, quantize_, quantize_state_dict
from vidcompress.codec import EncodeConfig, decode, encode
from vidcompress.codec.container import manifest_text
from vidcompress.errors import FormatError, InputError, VidcompressError
from vidcompress.io import load_state_dict, save_state_dict
from vidcompress.metadata import read_stages
from vidcompress.testing import MUTATIONS, edit_header, edit_manifest, mutate, state_dicts_bits_equal


@pytest.fixture(scope="module")
def container(tmp_path_factory) -> bytes:
    torch.manual_seed(0)
    model = R3D18Like(width=4)
    prune_(model, "conv=0.8,fc=0.9")
    state, _ = quantize_state_dict(model.state_dict())
    path = tmp_path_factory.mktemp("c") / "model.vcz"
    encode(state, path, EncodeConfig(index_bits="conv=4,fc=3"))
    return path.read_bytes()


def _expect_format_error(data: bytes, original: bytes, folder: Path) -> None:
    """The package's error, or (for a change the format does not cover, such as the stage record in
    the metadata) exactly the original weights: never another exception, never wrong weights."""
    path = folder / "mutated.vcz"
    path.write_bytes(data)
    start = time.perf_counter()
    decoded = None
    with contextlib.suppress(VidcompressError):
        decoded = decode(path)
    assert time.perf_counter() - start < 10
    if decoded is not None:
        (folder / "original.vcz").write_bytes(original)
        assert state_dicts_bits_equal(decoded, decode(folder / "original.vcz"))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_containers_fail_cleanly(container: bytes, tmp_path: Path, data) -> None:
    blob = mutate(
        container,
        data.draw(st.sampled_from(MUTATIONS)),
        lambda low, high: data.draw(st.integers(low, high)),
        lambda size: data.draw(st.binary(min_size=1, max_size=size)),
    )
    _expect_format_error(blob, container, tmp_path)


def _set(path: list, value):
    def edit(manifest: dict) -> None:
        target = manifest
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return edit


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_set(["layers", 0, "shape"], [1 << 40, 1 << 20]), "declares"),
        (_set(["layers", 0, "shape"], [64, 64, 64, 64]), "declares"),
        (_set(["layers", 0, "nonzeros"], -5), "negative or non-integer"),
        (_set(["layers", 0, "nonzeros"], 3), "stream counts"),
        (_set(["layers", 0, "weights", "count"], 10**12), "stream counts"),
        (_set(["layers", 0, "index_bits"], 40), "out of range"),
        (_set(["layers", 0, "shape"], "abc"), "negative or non-integer"),
        (_set(["layers", 0, "weights"], [1, 2]), "malformed"),
        (_set(["layers", 0, "weights", "payload_bytes"], 10**15), "declares"),
        (_set(["layers", 0, "weights", "coding"], "zip"), "unknown coding"),
        (_set(["format_version"], 99), "format version 99"),
        (_set(["layers", 0, "layout"], "diagonal"), "unknown layout"),
        (_set(["raw_crc32"], [1]), "raw CRC32 values"),
        (_set(["order"], []), "disagree"),
        (_set(["order"], ["a", "a"]), "disagree"),
    ],
)
def test_edited_manifests_are_format_errors(container: bytes, tmp_path: Path, edit, message: str) -> None:
    path = tmp_path / "edited.vcz"
    path.write_bytes(edit_manifest(container, edit))
    with pytest.raises(FormatError, match=message):
        decode(path)


def test_unknown_version_and_huge_expansion(container: bytes, tmp_path: Path) -> None:
    (tmp_path / "v7.vcz").write_bytes(edit_header(container, lambda metadata: metadata.update(format_version="7")))
    with pytest.raises(FormatError, match=r"format version .7."):
        decode(tmp_path / "v7.vcz")

    def all_zero(manifest: dict) -> None:  # a consistent, tiny description of a huge all-zero layer
        layer = manifest["layers"][0]
        layer["shape"] = [1 << 16, 1 << 15]
        span = 1 << layer["index_bits"]
        fillers = (1 << 31) // span - 1
        layer.update(nonzeros=0, fillers=fillers)
        for stream in ("weights", "indices"):
            layer[stream].update(count=fillers, coding="constant", bit_length=0, payload_bytes=0, table_bytes=0)

    (tmp_path / "bomb.vcz").write_bytes(edit_manifest(container, all_zero))
    with pytest.raises(FormatError, match=r"refusing to allocate|declares"):
        decode(tmp_path / "bomb.vcz")


def test_a_row_walk_in_a_version_4_manifest_is_a_format_error(container: bytes, tmp_path: Path) -> None:
    """Version 5 added the row walk; an older version's manifest declaring one is malformed."""

    def to_version_4(manifest: dict) -> None:
        manifest["format_version"] = 4
        manifest["layers"][0]["layout"] = "rows"

    (tmp_path / "v4.vcz").write_bytes(
        edit_header(edit_manifest(container, to_version_4), lambda metadata: metadata.update(format_version="4"))
    )
    with pytest.raises(FormatError, match="layout 'rows', which format version 4 does not have"):
        decode(tmp_path / "v4.vcz")


def test_version_3_files_with_a_plain_manifest_still_decode(tmp_path: Path) -> None:
    """Versions 2 and 3 kept the manifest as plain JSON; version 4 compresses it. Without the row walk
    (version 5) a file is written as version 4."""
    torch.manual_seed(0)
    model = R3D18Like(width=4)
    prune_(model, "conv=0.8,fc=0.9")
    state, _ = quantize_state_dict(model.state_dict())
    encode(state, tmp_path / "v4.vcz", EncodeConfig(index_bits="conv=4,fc=3", row_walk=False))
    container = (tmp_path / "v4.vcz").read_bytes()
    written: dict[str, str] = {}
    edit_header(container, written.update)  # reads the header's metadata
    assert written["format_version"] == "4" and json.loads(manifest_text(written, "v4"))["format_version"] == 4

    def to_version_3(metadata: dict[str, str]) -> None:
        manifest = json.loads(manifest_text(metadata, "v4"))
        manifest["format_version"] = 3
        text = json.dumps(manifest)
        metadata.update(format_version="3", manifest=text, manifest_crc32=str(zlib.crc32(text.encode())))

    (tmp_path / "v3.vcz").write_bytes(edit_header(container, to_version_3))
    assert state_dicts_bits_equal(decode(tmp_path / "v3.vcz"), decode(tmp_path / "v4.vcz"))
    assert (tmp_path / "v3.vcz").stat().st_size > (tmp_path / "v4.vcz").stat().st_size


@pytest.mark.parametrize(
    ("stored", "message"),
    [
        ("{not base85", "not zlib data"),  # '{' is not in Base85's alphabet
        (base64.b85encode(b"plain bytes, not zlib").decode(), "not zlib data"),
        (base64.b85encode(zlib.compress(b"[" * 100)[:-6]).decode(), "truncated"),
        # a manifest bomb: 80 MB of JSON whitespace in 80 KB, more than MAX_MANIFEST_BYTES
        (base64.b85encode(zlib.compress(b" " * (80 << 20), 9)).decode(), "inflates to more than"),
    ],
)
def test_a_compressed_manifest_that_does_not_inflate_is_a_format_error(
    container: bytes, tmp_path: Path, stored: str, message: str
) -> None:
    path = tmp_path / "forged.vcz"
    path.write_bytes(edit_header(container, lambda metadata: metadata.update(manifest=stored)))
    with pytest.raises(FormatError, match=message):
        decode(path)


def test_half_precision_weights_are_supported(tmp_path: Path) -> None:
    for dtype in (torch.float16, torch.bfloat16):
        model = mlp().to(dtype)
        prune_(model, "fc=0.8")
        quantize_(model, "fc=4")
        from vidcompress.quantize import finalize_

        finalize_(model)
        state = model.state_dict()
        assert all(t.dtype == dtype for t in state.values())
        encode(state, tmp_path / f"{dtype}.vcz", EncodeConfig(bits="fc=4"))
        decoded = decode(tmp_path / f"{dtype}.vcz")
        assert state_dicts_bits_equal(decoded, state)


def test_inconsistent_metadata_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    save_state_dict({"w.weight": torch.ones(2, 2)}, path, {"vidcompress": "{not json"})
    _, metadata = load_state_dict(path)
    with pytest.raises(InputError, match="not valid JSON"):
        read_stages(metadata, str(path))
    from click.testing import CliRunner

    from vidcompress.cli import main

    result = CliRunner().invoke(main, ["quantize", str(path), "-o", str(tmp_path / "q.safetensors")])
    assert result.exit_code == 2 and "not valid JSON" in result.output
    assert not (tmp_path / "q.safetensors").exists()


def test_nan_weights_are_reported_by_the_cli(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from vidcompress.cli import main

    path = tmp_path / "nan.safetensors"
    weight = torch.randn(4, 4)
    weight[1, 2] = float("inf")
    save_state_dict({"fc.weight": weight}, path)
    result = CliRunner().invoke(main, ["quantize", str(path), "-o", str(tmp_path / "q.safetensors")])
    assert result.exit_code == 2 and "fc.weight" in result.output and "NaN or inf" in result.output


@pytest.mark.parametrize(
    "command", ["prune", *(pytest.param(c, marks=pytest.mark.slow) for c in ("quantize", "encode", "decode"))]
)
def test_kill_9_leaves_no_partial_output_and_the_input_intact(tmp_path: Path, command: str) -> None:
    torch.manual_seed(0)
    big = {"a.weight": torch.randn(2048, 2048), "b.weight": torch.randn(1024, 2048)}
    source = tmp_path / "in.safetensors"
    if command in ("encode", "decode"):
        big, _ = quantize_state_dict(big)
    save_state_dict(big, source)
    if command == "decode":
        encode(big, tmp_path / "in.vcz")
        source = tmp_path / "in.vcz"
    before = source.read_bytes()
    out = tmp_path / ("out.vcz" if command == "encode" else "out.safetensors")
    outcomes = set()
    for delay in (0.3, 0.8, 1.5):
        out.unlink(missing_ok=True)
        process = subprocess.Popen(
            [sys.executable, "-m", "vidcompress.cli", command, str(source), "-o", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait()
        if out.exists():  # it finished before the kill: the file must be whole
            outcomes.add("finished")
            if command in ("prune", "quantize", "decode"):
                load_state_dict(out)
            else:
                decode(out)
        else:
            outcomes.add("killed")
        assert source.read_bytes() == before
    assert "killed" in outcomes
    # Besides the inputs and a whole output, a kill may leave only the writer's hidden temporaries.
    expected = {"in.safetensors", "in.vcz", out.name}
    strays = [p.name for p in tmp_path.iterdir() if p.name not in expected]
    assert all(name.startswith(f".{out.name}.") and name.endswith(".tmp") for name in strays), strays


class _Tripwire:
    """Unpickling it creates a marker file: proof that a loader ran the pickle."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickles_are_refused_even_when_named_safetensors(tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    for name in ("trick.safetensors", "trick.pt"):
        path = tmp_path / name
        torch.save({"w": torch.ones(1), "trap": _Tripwire(marker)}, path)  # a pickle, whatever its name
        with pytest.raises(InputError):
            load_state_dict(path)
        assert not marker.exists(), f"{name} was unpickled"
