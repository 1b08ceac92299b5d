"""Reading and writing state dicts: safetensors in and out, `.pt` only through weights_only, atomic writes."""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import os
import socket
import struct
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from vidcompress.errors import InputError, OutputError, check_path, check_weights

StateDict = dict[str, torch.Tensor]

SAFETENSORS_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
_CHECKPOINT_KEYS = ("state_dict", "model", "model_state_dict")


def load_state_dict(path: str | os.PathLike[str]) -> tuple[StateDict, dict[str, str]]:
    """Read a weights file into a state dict and its string metadata.

    `.safetensors` files are read directly (a vidcompress container is decoded: its weights and the
    metadata of the file it was made from, never its raw streams); `.pt`, `.pth`, `.bin` and `.ckpt`
    files are read with `torch.load(weights_only=True)`, so pickled code is never run. A checkpoint dict that holds the
    weights under `state_dict`, `model` or `model_state_dict` is unwrapped, and the `module.` and
    `_orig_mod.` prefixes of DataParallel, DDP and torch.compile are removed.

    Raises:
        InputError: the file is missing, is not a weights file, or holds no tensors.
    """
    check_path(path, "path")
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a weights file")
    if path.suffix in PICKLE_SUFFIXES:
        tensors, metadata = _load_torch(path), dict[str, str]()
    elif read_metadata(path).get("format") == CONTAINER_FORMAT:  # the header only, before any tensor
        from vidcompress.codec import decode_with_metadata  # codec imports this module

        tensors, metadata = decode_with_metadata(path)
    else:
        tensors, metadata = _load_safetensors(path)
    if not tensors:
        raise InputError(f"{path}: holds no tensors")
    return strip_wrapper_prefixes(tensors), metadata


CONTAINER_FORMAT = "vidcompress.container"  # the container's metadata `format` (codec.manifest.FORMAT_NAME)
WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DataParallel / DistributedDataParallel, torch.compile


def strip_wrapper_prefixes(tensors: Mapping[str, torch.Tensor]) -> StateDict:
    """Remove the prefixes that DataParallel, DDP and torch.compile put on every key (nested too)."""
    result = dict(tensors)
    while result:
        prefix = next((p for p in WRAPPER_PREFIXES if all(key.startswith(p) for key in result)), None)
        if prefix is None:
            break
        result = {key[len(prefix) :]: value for key, value in result.items()}
    return result


def fold_pruning_leftovers(tensors: Mapping[str, torch.Tensor]) -> tuple[StateDict, list[str]]:
    """Fold `torch.nn.utils.prune` leftovers (`X_orig` and `X_mask`) into the tensor `X` they stand for.

    Returns the new state dict (in the original order) and the names of the folded tensors.
    """
    folded: StateDict = {}
    names = []
    for key, value in tensors.items():
        if key.endswith("_orig") and f"{key[:-5]}_mask" in tensors:
            base = key[:-5]
            mask = tensors[f"{base}_mask"]
            if mask.shape != value.shape:
                raise InputError(f"{base}_mask: shape {tuple(mask.shape)} does not match {key} {tuple(value.shape)}")
            folded[base] = torch.where(mask.to(torch.bool), value, torch.zeros((), dtype=value.dtype))
            names.append(base)
        elif key.endswith("_mask") and f"{key[:-5]}_orig" in tensors:
            continue
        else:
            folded[key] = value
    return folded, names


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """Return the string metadata of a safetensors file without reading its tensors."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except (SafetensorError, OSError, ValueError) as error:
        raise InputError(f"{path}: not a readable safetensors file ({error})") from None


def _load_safetensors(path: Path) -> tuple[StateDict, dict[str, str]]:
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = dict(handle.metadata() or {})
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise InputError(f"{path}: not a readable safetensors file ({error})") from None
    return tensors, metadata


def _torch_reason(error: Exception) -> str:
    """The line of torch.load's error that says what was refused (its first lines are advice to load
    with weights_only=False, which is what this package never does)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    specific = [line for line in lines if "GLOBAL" in line or "Unsupported" in line]
    useful = [line for line in lines if not line.startswith(("Weights only load failed", "Check the documentation"))]
    return (specific or useful or lines or [type(error).__name__])[0].rstrip(".")


def _load_torch(path: Path) -> StateDict:
    try:
        with warnings.catch_warnings():  # torch's multi-line notes on pickle protocols: our one line says it
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
        raise InputError(
            f"{path}: cannot be read as a weights-only PyTorch file ({_torch_reason(error)}); "
            "files holding pickled objects are refused"
        ) from None
    if isinstance(obj, Mapping):
        for key in _CHECKPOINT_KEYS:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping):
        raise InputError(f"{path}: holds a {type(obj).__name__}, expected a dict of tensors")
    return {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def check_output_path(
    output: str | os.PathLike[str],
    *,
    inputs: tuple[str | os.PathLike[str], ...] = (),
    force: bool = False,
    force_hint: str = "pass force=True",
) -> Path:
    """Refuse an output path that is one of the inputs, or that exists when `force` is off."""
    output = Path(output)
    for source in inputs:
        if Path(source).exists() and output.exists() and output.samefile(source):
            raise InputError(f"{output}: output is the same file as the input; choose another path")
        if Path(os.path.abspath(source)) == Path(os.path.abspath(output)):
            raise InputError(f"{output}: output is the same file as the input; choose another path")
    if output.is_dir():
        raise InputError(f"{output}: is a directory, expected a file path")
    if output.exists() and not force:
        raise InputError(f"{output}: exists; {force_hint} to overwrite it")
    check_output_folder(output.parent, output)
    if not output.parent.exists():
        raise InputError(f"{output.parent}: output folder does not exist")
    return output


def check_output_folder(folder: str | os.PathLike[str], output: str | os.PathLike[str]) -> None:
    """Refuse a folder that `output` cannot be written into: the folder, or the nearest one above it
    when it is still to be created, must be a writable folder (not a file)."""
    folder = Path(folder)
    existing = next(p for p in [folder, *folder.parents] if p.exists() or p == p.parent)
    if not existing.is_dir():
        raise InputError(f"{output}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{output}: the folder {existing} is not writable")


STALE_SECONDS = 3600  # another host's temporary this old is taken for a dead writer's
HOST = socket.gethostname().replace(".", "_") or "host"


def _remove_stale_temporaries(path: Path) -> None:
    """Remove `.NAME.HOST.PID.*.tmp` files left beside `path` by a killed writer. On this host a
    writer whose process is gone is dead, and its file goes at once; a file of another host (a folder
    shared over the network) goes only when it is over an hour old, since that host's processes
    cannot be seen from here. Anything else is left alone."""
    for candidate in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        parts = candidate.name[len(path.name) + 2 :].split(".")
        host, pid = (parts[0], parts[1]) if len(parts) >= 3 and parts[1].isdigit() else (None, parts[0])
        if not pid.isdigit():
            continue
        if host == HOST:
            try:
                os.kill(int(pid), 0)
                continue  # still running
            except ProcessLookupError:
                candidate.unlink(missing_ok=True)
            except (PermissionError, OverflowError, ValueError):
                pass
            continue
        try:
            if time.time() - candidate.stat().st_mtime > STALE_SECONDS:
                candidate.unlink()
        except OSError:
            continue


def _write_failure(path: Path, error: OSError) -> OutputError:
    """One sentence for a failed write: the output's name and the system's reason."""
    reason = error.strerror or str(error)
    if error.errno == errno.ENOSPC:
        reason = "no space left on the device"
    elif error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        reason = f"the folder {path.parent} is not writable ({reason.lower()})"
    elif error.errno == errno.ENOTDIR:
        reason = f"{path.parent} is not a folder"
    return OutputError(f"{path}: cannot write it: {reason}; nothing was changed")


def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read it: set and restore
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed onto `path`, else removed.

    An interrupted run therefore never leaves a partial file under the final name; the temporary
    it may leave (`.NAME.PID.*.tmp`) is removed by a later write of the same name.
    """
    path = Path(path)
    try:
        _remove_stale_temporaries(path)
        handle, temporary = tempfile.mkstemp(
            prefix=f".{path.name}.{HOST}.{os.getpid()}.", suffix=".tmp", dir=path.parent
        )
        os.close(handle)
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes 0600; a written file gets the user's umask
    except OSError as error:
        raise _write_failure(path, error) from None
    temporary_path = Path(temporary)
    try:
        yield temporary_path
        with open(temporary_path, "rb+") as stream:
            os.fsync(stream.fileno())
        os.replace(temporary_path, path)
        _fsync_folder(path.parent)  # the rename itself survives a power loss once reported
    except OSError as error:
        raise _write_failure(path, error) from None
    finally:
        temporary_path.unlink(missing_ok=True)


def _fsync_folder(folder: Path) -> None:
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # a platform or file system that cannot open folders: nothing more to make durable
    try:
        os.fsync(descriptor)
    except OSError:
        pass  # some file systems refuse fsync on a folder; the data itself is already synced
    finally:
        os.close(descriptor)


def write_atomic(path: str | os.PathLike[str], write: Callable[[Path], None]) -> None:
    """Call `write(temporary_path)` and move the result onto `path` atomically."""
    with atomic_path(path) as temporary:
        write(temporary)


def save_state_dict(
    tensors: Mapping[str, torch.Tensor],
    path: str | os.PathLike[str],
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Write tensors and string metadata to a `.safetensors` file atomically, one tensor at a time.

    The metadata gets `format: pt` unless it names a format, as `safetensors.torch.save_file` writes
    and as `transformers` requires. Tensors that share storage (tied weights) are each written whole.
    """
    check_weights(tensors, "tensors")
    check_path(path, "path")
    header = safetensors_header(tensors, {"format": "pt", **(metadata or {})})
    write_atomic(path, lambda temporary: write_safetensors(temporary, header, tensors))


_DTYPE_CODES = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
    torch.uint16: "U16",
    torch.uint32: "U32",
    torch.uint64: "U64",
    torch.float8_e4m3fn: "F8_E4M3",
    torch.float8_e5m2: "F8_E5M2",
}


def safetensors_header(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None) -> bytes:
    """The 8-byte length and JSON header of a safetensors file holding `tensors` in their order.

    Our own writer (the format is a length, a JSON header and the raw bytes) so that a file is written
    tensor by tensor, never held whole in memory, and so that equal inputs give equal bytes: metadata
    keys are sorted, tensors keep the caller's order. The safetensors library reads the files.
    """
    for key, value in (metadata or {}).items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise InputError(f"metadata {key!r}: keys and values must be strings")
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = dict(sorted(metadata.items()))
    offset = 0
    for name, tensor in tensors.items():
        if tensor.dtype not in _DTYPE_CODES:
            raise InputError(f"{name}: dtype {tensor.dtype} cannot be stored in a safetensors file")
        size = tensor.numel() * tensor.element_size()
        header[name] = {
            "dtype": _DTYPE_CODES[tensor.dtype],
            "shape": list(tensor.shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)  # safetensors pads the header to a multiple of 8 bytes
    return struct.pack("<Q", len(text)) + text


def _tensor_bytes(tensor: torch.Tensor) -> memoryview:
    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    return memoryview(flat.view(torch.uint8).numpy().data) if flat.numel() else memoryview(b"")


def write_safetensors(path: Path, header: bytes, tensors: Mapping[str, torch.Tensor]) -> None:
    with open(path, "wb") as stream:
        stream.write(header)
        for tensor in tensors.values():
            stream.write(_tensor_bytes(tensor))


def safetensors_bytes(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None) -> bytes:
    """Serialise tensors and metadata to safetensors bytes (what `save_state_dict` writes, in memory)."""
    parts = [safetensors_header(tensors, metadata)]
    parts += [bytes(_tensor_bytes(tensor)) for tensor in tensors.values()]
    return b"".join(parts)
