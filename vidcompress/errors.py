"""The exception hierarchy: every error vidcompress raises on purpose derives from VidcompressError."""


class VidcompressError(Exception):
    """Base class of the errors vidcompress raises on purpose; the CLI turns them into exit code 2."""


class InputError(VidcompressError):
    """A file or value given by the user cannot be used (missing, wrong kind, no tensors, refused)."""


class ConfigError(VidcompressError):
    """A configuration or rule is malformed or does not fit the model it is applied to."""


class FormatError(InputError):
    """A container or weights file is truncated, corrupted or of an unknown format version."""


class OutputError(VidcompressError):
    """An output cannot be written (no permission, not a folder, disk full); nothing was changed."""


# Argument checks of the Python API: a wrong type is a TypeError naming the argument and what it
# accepts, raised before any work (not an error from deep inside about some attribute).


def check_path(value: object, argument: str = "path") -> None:
    import os

    if not isinstance(value, str | os.PathLike) or isinstance(value, bytes):
        raise TypeError(f"{argument}: expected a file path (str or os.PathLike), got {type(value).__name__}")


def check_module(value: object, argument: str = "model") -> None:
    from torch import nn

    if not isinstance(value, nn.Module):
        raise TypeError(f"{argument}: expected a torch.nn.Module, got {type(value).__name__}")


def check_weights(value: object, argument: str = "source") -> None:
    """A module, or a mapping of names to tensors."""
    from collections.abc import Mapping

    import torch
    from torch import nn

    if isinstance(value, nn.Module):
        return
    if not isinstance(value, Mapping):
        raise TypeError(
            f"{argument}: expected an nn.Module or a state dict (a mapping of names to tensors), "
            f"got {type(value).__name__}"
        )
    for name, tensor in value.items():
        if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
            raise TypeError(
                f"{argument}: expected a state dict of str -> Tensor, got {name!r}: {type(tensor).__name__}"
            )
