"""The base of the library's configs: frozen, keyword-only dataclasses with a tagged dict form.

A config's fields hold parsed values (`LayerRules`, `Schedule`, nested configs); its `__init__` also
takes their text or mapping forms and parses them, so `PruneConfig(sparsity="conv=0.9")` and
`PruneConfig(sparsity=LayerRules.parse(...))` build equal configs. `to_dict` writes a JSON-ready
dict tagged with the class name and a version (`_type`, `_version`, as torchao's `config_to_dict`
does); `from_dict` checks both and refuses unknown fields, so a config file for one stage is never
silently read as another's.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any, ClassVar, Self

from vidcompress.errors import ConfigError

TYPE_KEY = "_type"
VERSION_KEY = "_version"


class Config:
    """Mixin of the config dataclasses (declared `@dataclass(frozen=True, init=False)` with their own
    keyword-only `__init__`)."""

    VERSION: ClassVar[int] = 1

    def _set(self, **values: Any) -> None:
        """Assign the parsed fields (the dataclass is frozen)."""
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {TYPE_KEY: type(self).__name__, VERSION_KEY: self.VERSION}
        for spec in fields(self):  # type: ignore[arg-type]
            value = getattr(self, spec.name)
            if hasattr(value, "to_dict"):
                value = value.to_dict()
            data[spec.name] = list(value) if isinstance(value, tuple) else value  # plain JSON: lists
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{cls.__name__}: expected an object of fields, got {data!r}")
        data = dict(data)
        kind = data.pop(TYPE_KEY, cls.__name__)
        if kind != cls.__name__:
            raise ConfigError(f"a {kind} config where a {cls.__name__} is expected")
        version = data.pop(VERSION_KEY, cls.VERSION)
        if not isinstance(version, int) or not 1 <= version <= cls.VERSION:
            raise ConfigError(f"{cls.__name__} version {version!r}: this vidcompress reads 1 to {cls.VERSION}")
        known = {spec.name for spec in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{cls.__name__}: unknown field(s) {unknown} (known: {sorted(known)})")
        try:
            return cls(**data)
        except TypeError as error:
            raise ConfigError(f"{cls.__name__}: {error}") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> Self:
        try:
            data = json.loads(text)
        except ValueError as error:
            raise ConfigError(f"{cls.__name__}: not valid JSON ({error})") from None
        return cls.from_dict(data)

    @classmethod
    def from_file(cls, path: str | Path) -> Self:
        """Read a config from a `.json` or `.toml` file (a TOML file holds the same fields as the JSON)."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        if path.suffix not in (".json", ".toml"):
            raise ConfigError(f"{path}: a config file is .json or .toml")
        try:
            text = path.read_text()
            data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        except (ValueError, UnicodeDecodeError) as error:
            raise ConfigError(f"{path}: not a valid {path.suffix[1:].upper()} config ({error})") from None
        try:
            return cls.from_dict(data)
        except ConfigError as error:
            raise ConfigError(f"{path}: {error}") from None


def nested(value: Any, kind: type[Config]) -> Any:
    """A nested config field's value from an instance or its dict form."""
    if isinstance(value, kind):
        return value
    if isinstance(value, Mapping):
        return kind.from_dict(value)
    raise ConfigError(f"expected a {kind.__name__} or its dict form, got {value!r}")
