"""A strict YAML reader that remembers where every key and item came from.

PyYAML follows YAML 1.1, where a bare `on`, `off`, `yes` or `no` is a boolean; here
only `true` and `false` are (as in YAML 1.2), so a hook's `on:` key stays the string
"on". Dates stay strings, duplicate keys and non-string keys are errors, and every
mapping and sequence records the line of each key or item, so the config loader can
point at `file:line: key.path`. Any failure becomes a located ConfigError.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, SequenceNode

from watcherd.durations import parse_duration
from watcherd.errors import ConfigError

#: Deeper documents are refused before Python's recursion limit is near.
MAX_DEPTH: Final = 64

_DROPPED_TAGS = frozenset({"tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp"})
_DROPPED_TAGS |= {"tag:yaml.org,2002:value"}


class YamlMap(dict[str, Any]):
    """A mapping that knows its own line and the line of each key (1-based)."""

    line: int
    key_lines: dict[str, int]


class YamlList(list[Any]):
    """A sequence that knows its own line and the line of each item (1-based)."""

    line: int
    item_lines: list[int]


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans, depth limit and located containers."""

    _depth = 0

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        """Compose as usual, refusing nesting deeper than MAX_DEPTH."""
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels", mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        """Construct as usual, turning a bad scalar (`!!int x`) into a located error."""
        try:
            return super().construct_object(node, deep)
        except (ValueError, TypeError, LookupError, AttributeError, OverflowError) as exc:
            raise ConstructorError(None, None, f"bad value: {exc}", node.start_mark) from exc


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in entries if tag not in _DROPPED_TAGS]
    for first, entries in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _construct_map(loader: _Loader, node: MappingNode) -> Any:
    """Build a YamlMap, refusing duplicate and non-string keys."""
    data = YamlMap()
    data.line = node.start_mark.line + 1
    data.key_lines = {}
    yield data
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str):
            raise ConstructorError(None, None, "keys must be strings", key_node.start_mark)
        if key in data:
            raise ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        data[key] = loader.construct_object(value_node)
        data.key_lines[key] = key_node.start_mark.line + 1


def _construct_list(loader: _Loader, node: SequenceNode) -> Any:
    """Build a YamlList that records each item's line."""
    data = YamlList()
    data.line = node.start_mark.line + 1
    data.item_lines = [item.start_mark.line + 1 for item in node.value]
    yield data
    data.extend(loader.construct_object(item) for item in node.value)


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_Loader.add_constructor("tag:yaml.org,2002:seq", _construct_list)


def load_document(text: str, filename: str) -> Any:
    """Parse one YAML document; every failure is a ConfigError with file and line."""
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise ConfigError(f"invalid YAML: {exc.reason}", path=filename, line=line) from None
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark or loader.get_mark()
        raise ConfigError(
            f"invalid YAML: {_describe(exc)}", path=filename, line=mark.line + 1
        ) from None
    except (
        yaml.YAMLError,
        ValueError,
        TypeError,
        LookupError,
        AttributeError,
        RecursionError,
    ) as exc:
        line = loader.get_mark().line + 1
        message = f"invalid YAML: {type(exc).__name__}"
        raise ConfigError(message, path=filename, line=line) from None
    finally:
        loader.dispose()


def _describe(exc: yaml.MarkedYAMLError) -> str:
    """One line out of PyYAML's multi-line message."""
    parts = [p for p in (exc.context, exc.problem) if p]
    return " ".join(str(p) for p in parts) or "cannot parse"


@dataclass(frozen=True, slots=True)
class Where:
    """A place in a config file: file name, line and key path (`hooks[1].timeout`)."""

    file: str
    line: int
    key: str = ""

    def error(self, message: str) -> ConfigError:
        """A ConfigError pointing here."""
        return ConfigError(message, path=self.file, line=self.line, key=self.key)

    def child(self, key: str, line: int) -> Where:
        """The place of `key` inside this mapping."""
        return Where(self.file, line, f"{self.key}.{key}" if self.key else key)

    def item(self, index: int, line: int) -> Where:
        """The place of item `index` inside this sequence."""
        return Where(self.file, line, f"{self.key}[{index}]")


class Section:
    """A YAML mapping read key by key; keys outside `allowed` are errors with a hint."""

    def __init__(self, data: object, where: Where, allowed: Iterable[str]) -> None:
        if data is None:
            data = YamlMap()
            data.line, data.key_lines = where.line, {}
        if not isinstance(data, YamlMap):
            raise where.error(f"must be a mapping, not {kind_of(data)}")
        self.data, self.at = data, where
        allowed = tuple(allowed)
        for key in data:
            if key not in allowed:
                raise self.where(key).error(_unknown(key, allowed))

    def __contains__(self, key: str) -> bool:
        return key in self.data

    def where(self, key: str) -> Where:
        """The place of `key` (the mapping's own line when the key is absent)."""
        return self.at.child(key, self.data.key_lines.get(key, self.data.line))

    def get(self, key: str, default: Any = None) -> Any:
        """The raw value of `key`, or `default`."""
        return self.data.get(key, default)

    def section(self, key: str, allowed: Iterable[str]) -> Section:
        """The nested mapping under `key` (empty when absent or null)."""
        return Section(self.data.get(key), self.where(key), allowed)

    def string(self, key: str, default: str, *, nonempty: bool = True) -> str:
        """A string value."""
        value = self.data.get(key, default)
        if not isinstance(value, str) or (nonempty and not value.strip()):
            raise self.where(key).error("must be a non-empty string")
        return value

    def duration(self, key: str, default: float) -> float:
        """A positive duration in seconds (`90`, `90s`, `10m`, `2h`)."""
        value = self.data.get(key, default)
        try:
            seconds = parse_duration(value)
        except ValueError:
            seconds = 0.0
        if seconds <= 0:
            shown = _show(value)
            raise self.where(key).error(
                f"must be a positive duration (like 90, 90s, 10m, 2h), got {shown}"
            )
        return seconds

    def integer(self, key: str, default: int, *, minimum: int) -> int:
        """An integer of at least `minimum`."""
        value = self.data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.where(key).error(f"must be an integer >= {minimum}, got {_show(value)}")
        return value

    def number(self, key: str, default: float) -> float:
        """A positive, finite number."""
        value = self.data.get(key, default)
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok or not math.isfinite(value) or value <= 0:
            raise self.where(key).error(f"must be a positive number, got {_show(value)}")
        return float(value)

    def choice(self, key: str, default: str, choices: Sequence[str]) -> str:
        """One of `choices` (case-insensitive)."""
        value = self.data.get(key, default)
        if not isinstance(value, str) or value.lower() not in choices:
            raise self.where(key).error(f"must be one of {', '.join(choices)}, got {_show(value)}")
        return value.lower()

    def sequence(self, key: str) -> list[tuple[Where, Any]]:
        """The items of the list under `key` with their places (empty when absent)."""
        value = self.data.get(key)
        if value is None:
            return []
        if not isinstance(value, YamlList):
            raise self.where(key).error(f"must be a list, not {kind_of(value)}")
        at = self.where(key)
        return [
            (at.item(i, line), v)
            for i, (line, v) in enumerate(zip(value.item_lines, value, strict=True))
        ]


def kind_of(value: object) -> str:
    """A short name for a YAML value's type."""
    names = {YamlMap: "a mapping", YamlList: "a list", str: "a string", bool: "a boolean"}
    names |= {int: "an integer", float: "a number"}
    return names.get(type(value), "null" if value is None else f"a {type(value).__name__}")


def _show(value: object) -> str:
    """A value for an error message: short scalars shown, containers only named."""
    if isinstance(value, str | int | float) and len(repr(value)) <= 40:
        return repr(value)
    return kind_of(value)


def _unknown(key: str, allowed: Sequence[str]) -> str:
    """`unknown key` with a did-you-mean hint."""
    import difflib  # only for a mistyped key's suggestion

    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else f" (known: {', '.join(allowed)})"
    return f"unknown key{hint}"
