"""The JSON round trip shared by the config dataclasses (PruneConfig, DSDConfig, QuantizeConfig)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Self


class JsonConfig:
    """Gives a config `to_json`/`from_json` on top of its own `to_dict`/`from_dict`."""

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> Self:
        return cls.from_dict(json.loads(text))
