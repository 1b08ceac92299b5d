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
