"""Reads the config's YAML into plain data: text, numbers, booleans, null, lists and mappings.

It exists because a config is untrusted input that must fail fast and clearly, and because
loading 10,000 targets must take a fraction of a second. libyaml's parser events are turned into
Python objects in one pass with an explicit stack: no node tree, no recursion, and the plain
scalars of a file (``name``, ``kind``, ``15s``) resolved once each. Types are YAML 1.1's as PyYAML
resolves them, except that dates stay text and only the core tags are accepted, so that the
data is what JSON Schema describes.

What no file gets past, each refused at the line where it happens:

- nesting deeper than ``MAX_DEPTH`` levels (aliases count with what they stand for);
- aliases standing for more values than ``ALIAS_RATIO`` times what the file writes out, beyond
  ``ALIAS_FLOOR`` (an alias bomb), or for a value that contains the alias itself;
- numbers beyond 64 bits, and infinities or NaN.

Mistakes that leave the rest readable are collected instead, each at its own line: repeated
keys (the first one is kept), keys that are not text (``? [a, b]``, ``yes:``), unsupported tags
(the value is then read as its text).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.events import (
    AliasEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from yaml.nodes import ScalarNode
from yaml.resolver import Resolver

from exporter.config_source import ConfigError, ConfigProblem, KeyPath

__all__ = ["ALIAS_FLOOR", "ALIAS_RATIO", "MAX_DEPTH", "read_yaml"]

MAX_DEPTH = 32
ALIAS_FLOOR = 100_000
ALIAS_RATIO = 10
_INT_LIMIT = 2**63

if TYPE_CHECKING:
    _Parser = yaml.CSafeLoader
else:
    # libyaml's parser when PyYAML was built with it (several times faster), else PyYAML's own.
    _Parser = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_CORE = "tag:yaml.org,2002:"
_IMPLICIT: dict[str | None, list[tuple[str, Any]]] = Resolver.yaml_implicit_resolvers
_CONSTRUCTOR = SafeConstructor()
_COLLECTION_TAGS = (None, "!", f"{_CORE}map", f"{_CORE}seq")


class _Key:
    """Markers for the state of a mapping between its keys and values."""

    def __init__(self, name: str) -> None:
        self.name = name


_NO_KEY = _Key("no key")  # the next scalar or collection is a key
_DISCARD = _Key("discard")  # the next value belongs to a rejected key
_MERGE = _Key("merge")  # the next value is merged (``<<: *base``)


class _Frame:
    """A mapping or list being read."""

    __slots__ = (
        "anchor",
        "container",
        "depth",
        "is_map",
        "key",
        "key_line",
        "line",
        "merge",
        "merge_line",
        "part",
        "start",
    )

    def __init__(
        self, container: Any, is_map: bool, part: str | int | None, line: int, anchor: str | None
    ) -> None:
        self.container = container
        self.is_map = is_map
        self.part = part  # this collection's key or index in its parent
        self.line = line
        self.anchor = anchor
        self.key: Any = _NO_KEY
        self.key_line = line  # kept only when lines are wanted
        self.merge: Any = None
        self.merge_line = line
        # The reader's count of values when this collection began: the values it stands for,
        # itself included, are the count at its end minus this.
        self.start = 0
        self.depth = 1  # levels of nesting, itself included


class _Fatal(Exception):
    """A mistake that stops reading."""

    def __init__(self, line: int | None, message: str, at: KeyPath | None = None) -> None:
        self.line = line
        self.message = message
        self.at = at


class _BadScalar(Exception):
    """A scalar that cannot be a value, read as its text after ``message`` is reported."""

    def __init__(self, message: str) -> None:
        self.message = message


def read_yaml(
    text: str,
    name: str,
    *,
    lines: dict[KeyPath, int] | None = None,
    on_string: Callable[[str, KeyPath], str] | None = None,
) -> tuple[Any, list[ConfigProblem]]:
    """The document in ``text`` (None when it is empty) and the problems that let reading go on.

    ``lines`` receives the line of every key (for a mapping's entries) and of every list item,
    by key path. ``on_string`` may replace each text value (not key) that contains a ``$``.
    Raises ``ConfigError`` for a mistake that stops reading.
    """
    reader = _Reader(name, lines, on_string)
    parser = _Parser(text)
    try:
        return reader.read(parser.get_event), reader.problems
    except _Fatal as fatal:
        problem = ConfigProblem(fatal.at, fatal.message, file=name, line=fatal.line)
        raise ConfigError([*reader.problems, problem]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        message = f"invalid YAML: {exc.problem or exc.context}"
        raise ConfigError([ConfigProblem(None, message, file=name, line=line)]) from None
    except yaml.reader.ReaderError as exc:
        line = text.encode("utf-8", "replace")[: exc.position].count(b"\n") + 1
        message = f"invalid YAML: {exc.reason} (character #x{exc.character:04x})"
        raise ConfigError([ConfigProblem(None, message, file=name, line=line)]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([ConfigProblem(None, f"invalid YAML: {exc}", file=name)]) from None
    finally:
        parser.dispose()


class _Reader:
    def __init__(
        self,
        name: str,
        lines: dict[KeyPath, int] | None,
        on_string: Callable[[str, KeyPath], str] | None,
    ) -> None:
        self.name = name
        self.lines = lines
        self.on_string = on_string
        self.problems: list[ConfigProblem] = []
        self.stack: list[_Frame] = []
        self.anchors: dict[str, tuple[Any, int, int] | None] = {}  # None: not finished yet
        self.written = 0  # the counts of ``read`` while it handles an alias
        self.total = 0
        self.expanded = 0
        self.plain: dict[str, Any] = {}  # plain scalar text -> its value

    def read(self, get_event: Callable[[], Any]) -> Any:
        """The document of the events from ``get_event``: the common events (a new text key, a
        plain or quoted value, a collection without tag or anchor problems) are handled inline,
        everything else by the methods below."""
        root = _Frame([], False, None, 1, None)
        stack = self.stack
        stack.append(root)
        plain = self.plain
        anchors = self.anchors
        lines = self.lines
        on_string = self.on_string
        written = 0  # values the file writes out: scalars (keys too), collections, aliases
        total = 0  # values read, each alias counted as what it stands for (keys left out)
        documents = 0
        while True:
            event = get_event()
            kind = event.__class__
            if kind is ScalarEvent:
                written += 1
                top = stack[-1]
                is_key = top.is_map and top.key is _NO_KEY
                value = event.value
                tag = event.tag
                if tag is None or tag == "!":
                    if event.implicit[0]:
                        if is_key and value == "<<":
                            value = _MERGE
                        elif value in plain:
                            value = plain[value]
                        else:
                            value = self._plain(value, event)
                else:
                    value = self._tagged(event)
                if event.anchor is not None:
                    anchors[event.anchor] = (value, 1, 0)
                if is_key:
                    if value.__class__ is str and value not in top.container:
                        top.key = value
                        if lines is not None:
                            top.key_line = event.start_mark.line + 1
                    else:
                        self._key(top, value, event)
                    continue
                total += 1
                if value.__class__ is str and on_string is not None and "$" in value:
                    value = on_string(value, self._path(top))
                if top.is_map:
                    key = top.key
                    if key.__class__ is str and lines is None:
                        top.container[key] = value
                        top.key = _NO_KEY
                    else:
                        self._add(top, value, event.start_mark.line + 1)
                elif lines is None:
                    top.container.append(value)
                else:
                    self._add(top, value, event.start_mark.line + 1)
            elif kind is MappingStartEvent or kind is SequenceStartEvent:
                written += 1
                total += 1
                top = stack[-1]
                if len(stack) > MAX_DEPTH or event.tag not in _COLLECTION_TAGS:
                    self._check_collection(event, top)
                part: str | int | None
                if top.is_map:
                    part = top.key if top.key.__class__ is str else None
                else:
                    part = len(top.container)
                anchor = event.anchor
                if anchor is not None:
                    anchors[anchor] = None
                is_map = kind is MappingStartEvent
                frame = _Frame(
                    {} if is_map else [], is_map, part, event.start_mark.line + 1, anchor
                )
                frame.start = total - 1
                stack.append(frame)
            elif kind is MappingEndEvent or kind is SequenceEndEvent:
                frame = stack.pop()
                value = frame.container if frame.merge is None else self._finish(frame)
                depth = frame.depth
                if frame.anchor is not None:
                    anchors[frame.anchor] = (value, total - frame.start, depth)
                top = stack[-1]
                if depth >= top.depth:
                    top.depth = depth + 1
                if top.is_map:
                    key = top.key
                    if key.__class__ is str and lines is None:
                        top.container[key] = value
                        top.key = _NO_KEY
                    else:
                        self._add(top, value, frame.line)
                elif lines is None:
                    top.container.append(value)
                else:
                    self._add(top, value, frame.line)
            elif kind is AliasEvent:
                self.written, self.total = written, total
                self._alias(event)
                written, total = self.written, self.total
            elif kind is DocumentStartEvent:
                documents += 1
                if documents > 1:
                    line = event.start_mark.line + 1
                    raise _Fatal(line, "invalid YAML: expected one document, found another")
            elif kind is StreamEndEvent:
                return root.container[0] if root.container else None

    def _here(self) -> KeyPath:
        """The key path of the innermost collection being read."""
        return tuple(f.part for f in self.stack[2:] if f.part is not None)

    def _path(self, top: _Frame) -> KeyPath:
        """The key path of the value about to be added to ``top``, the innermost collection."""
        if len(self.stack) == 1:
            return ()
        child = top.key if top.is_map else len(top.container)
        if isinstance(child, _Key):
            return (*self._here(), "<<") if child is _MERGE else self._here()
        return (*self._here(), child)

    def _problem(self, at: KeyPath, message: str, line: int) -> None:
        self.problems.append(ConfigProblem(at, message, file=self.name, line=line))

    def _plain(self, text: str, event: Any) -> Any:
        """A plain scalar's value, as PyYAML's resolver and safe constructor read it."""
        tag = _resolve(text)
        try:
            value = text if tag is None else _construct(tag, text)
        except _BadScalar as bad:
            line = event.start_mark.line + 1
            raise _Fatal(line, bad.message, self._path(self.stack[-1])) from None
        self.plain[text] = value
        return value

    def _tagged(self, event: Any) -> Any:
        tag: str = event.tag
        text: str = event.value
        short = tag.replace(_CORE, "!!")
        try:
            if tag == f"{_CORE}str":
                return text
            if tag in _EXPLICIT:
                return _construct(tag, text)
            raise _BadScalar(
                f"unsupported YAML tag {short}: a config holds only text, numbers, true/false, "
                "null, lists and mappings"
            )
        except _BadScalar as bad:
            message = bad.message
        except (ValueError, KeyError, yaml.YAMLError):
            message = f"{text!r} cannot be read as {short}"
        self._problem(self._path(self.stack[-1]), message, event.start_mark.line + 1)
        return text

    def _key(self, top: _Frame, key: Any, event: Any) -> None:
        line = event.start_mark.line + 1
        if key is _MERGE:
            if top.merge is not None:
                self._problem(self._here(), "duplicate key '<<'", line)
                top.key = _DISCARD
                return
            top.key = _MERGE
            top.merge_line = line
            return
        if key.__class__ is not str:
            if key is None:
                wanted = "an empty key (null)"
            else:
                name = "true or false" if isinstance(key, bool) else "a number"
                wanted = f"key {event.value} is read as {name}; quote it ('{event.value}')"
            self._problem(self._here(), f"{wanted}: keys must be text", line)
            top.key = _DISCARD
            return
        if key in top.container:
            self._problem(self._here(), f"duplicate key {key!r}", line)
            top.key = _DISCARD
            return
        top.key = key
        top.key_line = line

    def _check_collection(self, event: Any, top: _Frame) -> None:
        """Stops at a collection nested too deep; reports one with a tag that is not a
        mapping's or a list's (and reads it as if it had none)."""
        line = event.start_mark.line + 1
        if len(self.stack) > MAX_DEPTH:
            raise _Fatal(line, f"the config nests deeper than {MAX_DEPTH} levels")
        short = event.tag.replace(_CORE, "!!")
        self._problem(
            self._path(top),
            f"unsupported YAML tag {short}: a config holds only text, numbers, true/false, "
            "null, lists and mappings",
            line,
        )

    def _finish(self, frame: _Frame) -> Any:
        """The finished collection, with the mappings of ``<<`` merged under its own keys."""
        if frame.merge is None:
            return frame.container
        merged = frame.merge
        result = frame.container
        for mapping in merged if isinstance(merged, list) else [merged]:
            if not isinstance(mapping, dict):
                raise _Fatal(frame.merge_line, "invalid YAML: << merges only mappings")
            for key, value in mapping.items():
                result.setdefault(key, value)
        return result

    def _alias(self, event: Any) -> None:
        line = event.start_mark.line + 1
        if event.anchor not in self.anchors:
            raise _Fatal(line, f"invalid YAML: found undefined alias {event.anchor!r}")
        entry = self.anchors[event.anchor]
        if entry is None:
            raise _Fatal(line, f"invalid YAML: alias *{event.anchor} is inside its own anchor")
        value, size, depth = entry
        self.written += 1
        self.expanded += size
        if self.expanded > max(ALIAS_FLOOR, ALIAS_RATIO * self.written):
            raise _Fatal(
                line,
                f"aliases stand for more than {self.expanded:,} values, over {ALIAS_RATIO} times "
                f"the {self.written:,} the file writes out: refusing to expand them",
            )
        if len(self.stack) - 1 + depth > MAX_DEPTH:
            raise _Fatal(line, f"the config nests deeper than {MAX_DEPTH} levels")
        top = self.stack[-1]
        if top.is_map and top.key is _NO_KEY:
            if isinstance(value, str):
                self._key(top, value, event)
            else:
                self._problem(self._here(), "an alias as a key must stand for text", line)
                top.key = _DISCARD
            return
        self.total += size
        if depth >= top.depth:
            top.depth = depth + 1
        self._add(top, value, line)

    def _add(self, top: _Frame, value: Any, line: int) -> None:
        """Adds a value at ``line`` to ``top``: as a list item, or under the key just read
        (unless that key was rejected, or is ``<<``); a collection as a key is reported."""
        if not top.is_map:
            if self.lines is not None:
                self.lines[self._path(top)] = line
            top.container.append(value)
            return
        key = top.key
        if key is _NO_KEY:  # a list or mapping used as a key
            kind = "a mapping" if isinstance(value, dict) else "a list"
            self._problem(self._here(), f"a key must be text, not {kind}", line)
            top.key = _DISCARD
            return
        top.key = _NO_KEY
        if key is _DISCARD:
            return
        if key is _MERGE:
            top.merge = value
            return
        if self.lines is not None:
            self.lines[(*self._here(), key)] = top.key_line
        top.container[key] = value


_EXPLICIT = {f"{_CORE}{name}" for name in ("int", "float", "bool", "null")}


def _resolve(text: str) -> str | None:
    """The tag PyYAML's resolver gives a plain scalar; None for text."""
    for tag, pattern in _IMPLICIT.get(text[0] if text else "", ()):
        if pattern.match(text):
            return tag
    return None


def _construct(tag: str, text: str) -> Any:
    """The value of a scalar resolved (or tagged) as ``tag``; numbers must be finite 64-bit."""
    if tag == f"{_CORE}int":
        if len(text) > 80:
            raise _BadScalar(f"number {text[:20]}... ({len(text)} digits) is too large")
        whole: int = _CONSTRUCTOR.construct_yaml_int(ScalarNode(tag, text))
        if not -_INT_LIMIT <= whole < _INT_LIMIT:
            raise _BadScalar(f"number {text} is too large (at most 2^63 - 1)")
        return whole
    if tag == f"{_CORE}float":
        number: float = _CONSTRUCTOR.construct_yaml_float(ScalarNode(tag, text))
        if not math.isfinite(number):
            shown = text if len(text) <= 40 else f"{text[:20]}... ({len(text)} characters)"
            raise _BadScalar(f"number {shown} is out of range (numbers must be finite)")
        return number
    if tag == f"{_CORE}bool":
        return _CONSTRUCTOR.construct_yaml_bool(ScalarNode(tag, text))
    if tag == f"{_CORE}null":
        return None
    return text  # dates, ``<<`` and ``=`` outside a key: the text as written
