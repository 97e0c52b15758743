"""Where a config comes from, and how a mistake in it is told: key paths, problems, files.

Shared by every stage of loading (YAML, schema, value checks) and by the builders of each
section (targets, heartbeats, host), so that every mistake is one ``ConfigProblem`` value and is
worded as ``FILE:LINE: key.path: message`` in one place, ``ConfigProblem.__str__``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import jsonschema

__all__ = [
    "ConfigError",
    "ConfigProblem",
    "KeyPath",
    "Source",
    "compile_regex",
    "describe_error",
    "format_path",
    "given",
]

KeyPath = tuple[str | int, ...]
_Part = TypeVar("_Part")


class ConfigProblem(Exception):
    """One mistake at one place in the config: the file, its line, the key path and why.

    ``at`` is None for a mistake that belongs to no key (unreadable file, broken YAML). Builders
    raise it with the key path and the message; the loader fills in the file and the line (looked
    up only when something is wrong) with ``located``.
    """

    def __init__(
        self, at: KeyPath | None, message: str, *, file: str | None = None, line: int | None = None
    ) -> None:
        super().__init__(message)
        self.at = at
        self.message = message
        self.file = file
        self.line = line

    def located(self, file: str, line: int | None) -> ConfigProblem:
        return ConfigProblem(self.at, self.message, file=file, line=line)

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else (self.file or "")
        key = "" if self.at is None else f"{format_path(self.at)}: "
        return f"{where}: {key}{self.message}" if where else f"{key}{self.message}"

    def __repr__(self) -> str:
        return f"ConfigProblem({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ConfigProblem):
            return NotImplemented
        return (self.file, self.line, self.at, self.message) == (
            other.file,
            other.line,
            other.at,
            other.message,
        )

    def __hash__(self) -> int:
        return hash((self.file, self.line, self.at, self.message))


class ConfigError(Exception):
    """The config cannot be used; ``problems`` holds every mistake found in it, in file order."""

    def __init__(self, problems: Iterable[ConfigProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def format_path(at: KeyPath) -> str:
    """``("targets", 3, "expect", "status")`` -> ``targets[3].expect.status``."""
    text = ""
    for part in at:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "(top level)"


def given(raw: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    """The ``keys`` that ``raw`` sets, as keyword arguments of a spec dataclass: a key left out
    gets the dataclass field's default, the one place each default is written."""
    return {key: raw[key] for key in keys if key in raw}


class Source:
    """Where the config came from: resolves relative paths and reads secret files for builders."""

    def __init__(self, name: str, base_dir: Path) -> None:
        self.name = name
        self.base_dir = base_dir
        # Documents fetched for JSON Schema references during this load, by URI: each once.
        self.fetched: dict[str, Any] = {}
        # The values ``${VAR}`` put into the config, by key path: secrets wherever they land.
        self.from_environment: dict[KeyPath, list[str]] = {}
        # Parts built during this load from values written alike in many places (the same
        # ``expect`` block, the same labels), by what they were built from: see ``shared``.
        self._built: dict[Hashable, Any] = {}

    def shared(self, key: Hashable, build: Callable[[], _Part]) -> _Part:
        """What ``build`` returns, built once per load for each ``key``, then the same (frozen)
        value for every part with an equal ``key``: thousands of targets repeat a few ``expect``
        blocks. ``key`` must stand for everything ``build`` reads but the key path its problems
        name; a problem is raised, not kept, so every place with the mistake reports it."""
        if key in self._built:
            built: _Part = self._built[key]
            return built
        built = self._built[key] = build()
        return built

    def environment_values(self, at: KeyPath) -> list[str]:
        """The values of environment variables written into the text value at ``at``."""
        return self.from_environment.get(at, [])

    def path(self, value: str) -> Path:
        path = Path(value)
        return path if path.is_absolute() else self.base_dir / path

    def read_text(self, value: str, at: KeyPath) -> str:
        """The content of the file at ``value``; a secret file's trailing newline is dropped."""
        path = self.path(value)
        try:
            return path.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise ConfigProblem(at, f"cannot read file {str(path)!r}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigProblem(at, f"file {str(path)!r} is not UTF-8 text") from None


def describe_error(error: jsonschema.ValidationError | jsonschema.SchemaError) -> str:
    """A schema error in words a config author understands."""
    if error.validator in ("oneOf", "anyOf") and error.context:
        # The alternative of the instance's own type says what is wrong with it.
        same_type = [e for e in error.context if e.validator != "type"]
        if same_type:
            return describe_error(same_type[0])
    if error.validator == "not" and isinstance(error.validator_value, dict):
        keys = error.validator_value.get("required")
        if keys:
            return "keys " + " and ".join(repr(k) for k in keys) + " cannot be used together"
    if error.validator == "pattern":
        wanted = error.schema.get("description") if isinstance(error.schema, dict) else None
        if wanted:
            return f"{error.instance!r} is not {wanted}"
        return f"{error.instance!r} does not match {error.validator_value}"
    if error.validator == "type" and error.validator_value == "array" and _is_scalar(error):
        return f"{error.instance!r} is not a list; write `[{_flow(error.instance)}]`"
    types: Any = error.validator_value
    if error.validator == "type" and isinstance(error.instance, dict | list):
        found = "a mapping of keys" if isinstance(error.instance, dict) else "a list"
        return f"expected {_type_names(types)}, not {found}"
    if error.validator == "type" and error.instance is None:
        return f"no value given; expected {_type_names(types)}"
    return error.message


def _type_names(wanted: str | list[str]) -> str:
    return " or ".join(_TYPES.get(t, t) for t in (wanted if isinstance(wanted, list) else [wanted]))


_TYPES = {
    "array": "a list",
    "object": "a mapping of keys",
    "string": "text",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
}


def _is_scalar(error: jsonschema.ValidationError | jsonschema.SchemaError) -> bool:
    return isinstance(error.instance, str | int | float) and not isinstance(error.instance, bool)


def _flow(value: object) -> str:
    """A scalar as it is written inside a YAML flow list."""
    if isinstance(value, str):
        return value if value.replace("-", "").isalnum() else repr(value)
    return str(value)


def compile_regex(pattern: str, at: KeyPath) -> re.Pattern[str]:
    """A config regex, compiled at load (``re.MULTILINE``: ``^`` and ``$`` match at lines)."""
    try:
        return re.compile(pattern, re.MULTILINE)
    except re.error as exc:
        raise ConfigProblem(at, f"invalid regular expression {pattern!r}: {exc}") from None


# A URL that ``urlsplit`` splits without a question: a scheme, ``//``, a host name or IPv4
# address of ASCII letters, digits, dots and dashes (no brackets, no user info, nothing for IDNA
# checks), at most five digits of port, then printable ASCII. Most configured URLs are of this
# shape, and matching it takes a tenth of splitting the URL and reading its port.
_PLAIN_URL = re.compile(
    r"[A-Za-z][A-Za-z0-9+.-]*://[A-Za-z0-9.-]+(?::([0-9]{1,5}))?(?:[/?#][!-~]*)?"
)


def check_url(url: str, at: KeyPath) -> str:
    """``url`` when it can be split into its parts (a bracketed IPv6 host closed, a numeric
    port in range); ``ConfigProblem`` at ``at`` otherwise."""
    plain = _PLAIN_URL.fullmatch(url)
    if plain is not None and int(plain.group(1) or 0) <= 65535:
        return url
    from urllib.parse import urlsplit

    try:
        urlsplit(url).port  # noqa: B018 - reading the port checks it
    except ValueError as exc:
        raise ConfigProblem(at, f"not a valid URL: {exc}") from None
    return url
