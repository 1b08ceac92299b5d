"""What a stage learned, carried in the safetensors metadata under one JSON key, `vidcompress`.

Example: {"version": "0.1.0", "prune": {"config": {...}, "sparsity": {...}}, "quantize": {...}}.
Each stage adds its own entry and keeps the entries of earlier stages.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from vidcompress._version import __version__
from vidcompress.errors import InputError

METADATA_KEY = "vidcompress"


def read_stages(metadata: Mapping[str, str], source: str = "file") -> dict[str, Any]:
    """The stage record in a file's metadata ({} when the file has none)."""
    text = metadata.get(METADATA_KEY)
    if text is None:
        return {}
    try:
        stages = json.loads(text)
    except ValueError:
        raise InputError(f"{source}: metadata key {METADATA_KEY!r} is not valid JSON") from None
    if not isinstance(stages, dict):
        raise InputError(f"{source}: metadata key {METADATA_KEY!r} is not a JSON object")
    return stages


def with_stage(
    metadata: Mapping[str, str], stage: str, record: Mapping[str, Any], source: str = "file"
) -> dict[str, str]:
    """A copy of `metadata` with `record` stored as the entry of `stage`."""
    stages = read_stages(metadata, source)
    stages["version"] = __version__
    stages[stage] = dict(record)
    return {**metadata, METADATA_KEY: json.dumps(stages, sort_keys=True)}
