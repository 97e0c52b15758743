"""Where a config comes from, and how a mistake in it is located: key paths, problems, files.

Shared by ``config`` and the builders of each section (``targets``, heartbeats) so that every
error names the file, the line and the key path the same way.
"""

from __future__ import annotations

import re
from pathlib import Path

import jsonschema

__all__ = [
    "ConfigProblem",
    "KeyPath",
    "Source",
    "compile_regex",
    "describe_error",
    "format_path",
]

KeyPath = tuple[str | int, ...]


class ConfigProblem(Exception):
    """One mistake at one place in the config, raised while building the typed config."""

    def __init__(self, at: KeyPath, message: str) -> None:
        super().__init__(message)
        self.at = at
        self.message = message


def format_path(at: KeyPath) -> str:
    """``("targets", 3, "expect", "status")`` -> ``targets[3].expect.status``."""
    text = ""
    for part in at:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "(top level)"


class Source:
    """Where the config came from: resolves relative paths and reads secret files for builders."""

    def __init__(self, name: str, base_dir: Path) -> None:
        self.name = name
        self.base_dir = base_dir

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
    if error.validator in ("unevaluatedProperties", "additionalProperties"):
        return f"unknown key: {error.message}"
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
    return error.message


def compile_regex(pattern: str, at: KeyPath) -> re.Pattern[str]:
    """A config regex, compiled at load (``re.MULTILINE``: ``^`` and ``$`` match at lines)."""
    try:
        return re.compile(pattern, re.MULTILINE)
    except re.error as exc:
        raise ConfigProblem(at, f"invalid regular expression {pattern!r}: {exc}") from None
