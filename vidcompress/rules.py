"""Per-layer settings from rule strings such as `conv=0.9,fc=0.95,layer4.*=0.8,fc.weight=0`.

A rule's key is a layer kind (`conv`, `fc`, `emb`) or a glob over parameter names; later rules win; a
bare value (`auto`, `0.9`) applies to every layer. A rule that can do nothing is an error: a glob that
matches no layer, or a kind the model has no layer of. A kind written with a question mark (`emb?=5`:
embeddings, if any) may find none; library defaults and bare values are written back that way.
The value `off` (and, for sparsity, `0`) leaves a layer out. The same rules come from a JSON
object or a TOML table (`{"conv": 0.9, "layer4.*": 0.8}`), and are written back in that form into
file metadata, so the CLI, the Python API and the files speak the same objects.
"""

from __future__ import annotations

import fnmatch
import json
import os
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidcompress.errors import ConfigError
from vidcompress.layers import LayerInfo, LayerKind

OFF = "off"
_KINDS = {kind.value for kind in LayerKind}
_KINDS_ORDER = [kind.value for kind in LayerKind]
_BARE = "\0"  # marks the kind rules a bare value expands to
OPTIONAL = "?"  # after a kind: the rule may find no layer of that kind


@dataclass(frozen=True)
class ValueSpec:
    """What a rule's value means: its name in messages and how to read one."""

    name: str
    parse: Callable[[str], Any]  # returns the value, or None when the layer is turned off


def _parse_sparsity(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"sparsity {text!r}: expected a number in [0, 1) or 'off'") from None
    if not 0.0 <= value < 1.0:  # NaN fails too
        raise ConfigError(f"sparsity {text!r}: must be in [0, 1) (0 leaves the layer dense)")
    return None if value == 0.0 else value


def _parse_int(name: str, low: int, high: int, word: str | None) -> Callable[[str], Any]:
    def parse(text: str) -> int | str:
        if word is not None and text == word:
            return word
        try:
            value = int(text)
        except ValueError:
            extra = f", '{word}'" if word else ""
            raise ConfigError(f"{name} {text!r}: expected an integer from {low} to {high}{extra} or 'off'") from None
        if not low <= value <= high:
            raise ConfigError(f"{name} {text!r}: must be from {low} to {high}")
        return value

    return parse


SPARSITY = ValueSpec("sparsity", _parse_sparsity)
BITS = ValueSpec("bits", _parse_int("bits", 1, 16, word=None))
INDEX_BITS = ValueSpec("index bits", _parse_int("index bits", 1, 16, word="auto"))
# What `encode` stores per layer: a codebook of 2^bits values, or "raw" values (pruned, not quantized).
ENCODE_BITS = ValueSpec("bits", _parse_int("bits", 1, 16, word="raw"))


@dataclass(frozen=True)
class Rule:
    """One `pattern=value` pair; `value` None turns the matched layers off.

    `required`: a kind rule that must find a layer of its kind (False for defaults and bare values).
    """

    pattern: str
    value: Any
    required: bool = True

    @property
    def is_kind(self) -> bool:
        return self.pattern in _KINDS

    def matches(self, layer: LayerInfo) -> bool:
        if self.is_kind:
            return layer.kind.value == self.pattern
        return fnmatch.fnmatchcase(layer.name, self.pattern)


@dataclass(frozen=True)
class LayerRules:
    """An ordered list of rules for one setting (sparsity, bits or index bits)."""

    spec: ValueSpec
    rules: tuple[Rule, ...]

    @classmethod
    def parse(cls, source: RulesSource, spec: ValueSpec, *, default: bool = False) -> LayerRules:
        """Read rules from a rule string, a mapping, a `.json`/`.toml` file path, or rules.

        `default=True` marks library defaults: their kind rules may name kinds a model lacks.
        """
        if isinstance(source, LayerRules):
            return source
        if isinstance(source, Mapping):
            pairs = [(str(key), value) for key, value in source.items()]
        elif isinstance(source, str | os.PathLike) and str(source).endswith((".json", ".toml")):
            pairs = list(_read_rule_file(Path(source)).items())
        elif isinstance(source, str):
            pairs = _split_rule_string(source, spec)
        else:
            raise ConfigError(f"{spec.name} rules: expected a string or a mapping, got {source!r}")
        rules = []
        for pattern, raw in pairs:
            bare = pattern.startswith(_BARE)
            pattern = pattern.removeprefix(_BARE).strip()
            optional = pattern.endswith(OPTIONAL) and pattern[: -len(OPTIONAL)] in _KINDS
            pattern = pattern.removesuffix(OPTIONAL) if optional else pattern
            if not pattern:
                raise ConfigError(f"{spec.name} rule {pattern}={raw!r}: empty layer pattern")
            text = str(raw).strip().lower() if not isinstance(raw, str) else raw.strip()
            if isinstance(raw, bool):
                raise ConfigError(f"{spec.name} rule {pattern!r}: {raw!r} is not a value")
            value = None if text == OFF else spec.parse(text)
            rules.append(Rule(pattern, value, required=not (default or bare or optional)))
        return cls(spec, tuple(rules))

    def resolve(self, layers: Iterable[LayerInfo]) -> dict[str, Any]:
        """Map each layer name to its value (later rules win); layers turned off are left out.

        Raises:
            ConfigError: a name pattern matches no layer; a required kind rule finds no layer of its
                kind; a selected layer is refused (a foreign parametrization: see `layers`).
        """
        layers = list(layers)
        for rule in self.rules:
            if any(rule.matches(layer) for layer in layers):
                continue
            if not rule.is_kind:
                raise ConfigError(
                    f"{self.spec.name} rule {rule.pattern!r} matches no compressible parameter "
                    f"(known: {_sample_names(layers)})"
                )
            if rule.required:
                counts = ", ".join(f"{sum(layer.kind == k for layer in layers)} {k}" for k in _KINDS_ORDER)
                raise ConfigError(
                    f"{self.spec.name} rule {rule.pattern}={OFF if rule.value is None else rule.value}: "
                    f"the model has no {rule.pattern} layer (it has {counts})"
                )
        resolved = {}
        for layer in layers:
            value = None
            for rule in self.rules:
                if rule.matches(layer):
                    value = rule.value
            if value is not None:
                resolved[layer.name] = value
        refused = [layer for layer in layers if layer.name in resolved and layer.refused]
        if refused:
            first = refused[0]
            more = f" (and {len(refused) - 1} more: {_sample_names(refused[1:])})" if len(refused) > 1 else ""
            raise ConfigError(
                f"{first.name}: {first.refused}; compressing its stored tensor would change what the layer "
                f"computes. Leave it out ('{first.name}=off') or remove that parametrization first{more}"
            )
        return resolved

    def with_value(self, value: Any, spec: ValueSpec) -> LayerRules:
        """The same patterns, selecting the same layers, with `value` (a value of `spec`) for every
        layer that these rules do not turn off."""
        return LayerRules(
            spec, tuple(Rule(r.pattern, None if r.value is None else value, r.required) for r in self.rules)
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: an object from pattern to value (`"off"` for a layer turned off; a kind that
        may find no layer as `kind?`)."""
        return {
            rule.pattern + (OPTIONAL if rule.is_kind and not rule.required else ""): OFF
            if rule.value is None
            else rule.value
            for rule in self.rules
        }

    def __str__(self) -> str:
        return ",".join(f"{key}={value}" for key, value in self.to_dict().items())


# What a config or function accepts for rules: text, a mapping, a .json/.toml rule-file path, or rules.
RulesSource = str | os.PathLike[str] | Mapping[str, Any] | LayerRules


_EXAMPLES = {"sparsity": "conv=0.9,fc=0.95", "bits": "conv=8,fc=5", "index bits": "conv=8,fc=5"}


def _split_rule_string(text: str, spec: ValueSpec) -> list[tuple[str, str]]:
    pairs = []
    items = [item.strip() for item in text.split(",")]
    if len(items) > 1 and not all(items):
        raise ConfigError(f"{spec.name} rules {text!r}: an empty rule between commas")
    for item in items:
        if not item:
            continue
        pattern, sep, value = item.partition("=")
        if not sep and _is_value(pattern.strip(), spec):  # a bare value applies to every layer
            pairs += [(_BARE + kind.value, pattern.strip()) for kind in LayerKind]
            continue
        if not sep and _is_number(pattern.strip()):
            spec.parse(pattern.strip())  # a bare value out of range: say the range
        if not sep or not pattern.strip() or not value.strip():
            example = _EXAMPLES.get(spec.name, "conv=8,fc=5")
            raise ConfigError(f"{spec.name} rule {item!r}: expected a value or PATTERN=VALUE, e.g. {example!r}")
        pairs.append((pattern.strip(), value.strip()))
    if not pairs:
        raise ConfigError(f"{spec.name} rules {text!r}: no rule given")
    return pairs


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _is_value(text: str, spec: ValueSpec) -> bool:
    try:
        spec.parse(text)
    except ConfigError:
        return text == OFF
    return True


def _read_rule_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: rule file not found")
    try:
        data = tomllib.loads(path.read_text()) if path.suffix == ".toml" else json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: not a valid rule file ({error})") from None
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"{path}: expected a non-empty object of pattern = value")
    return data


def _sample_names(layers: list[LayerInfo], limit: int = 4) -> str:
    names = [layer.name for layer in layers[:limit]]
    more = f", ... {len(layers) - limit} more" if len(layers) > limit else ""
    return ", ".join(names) + more if names else "none"
