"""The ``{{ name }}`` templates of a flow's steps: a variable extracted by an earlier step, put
into a later step's URL, headers and body.

A template is parsed at load into literal text and references, so an unknown name or a stray
``{{`` is a config error naming the key, and rendering is a join. A variable's value is put in
as text (a JSON string as it is, other JSON values as JSON). In a ``json:`` body a string that is
exactly one reference takes the variable's JSON value, so ``"{{ total }}"`` stays a number.

Values marked secret are rendered twice: for the request, and for people (``<secret>`` in
their place) so the status page, the API and the probe command never show them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from exporter.config_source import ConfigProblem, KeyPath

__all__ = [
    "SECRET",
    "Template",
    "Value",
    "check_json",
    "parse",
    "render_json",
    "template_names",
]

SECRET = "<secret>"
_REFERENCE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


@dataclass(frozen=True, slots=True)
class Value:
    """A variable's value and whether it is a secret."""

    value: Any
    secret: bool = False

    def text(self) -> str:
        return self.value if isinstance(self.value, str) else json.dumps(self.value)


@dataclass(frozen=True, slots=True)
class Template:
    """Literal text and variable names, alternating: ``parts[0]`` is text, ``parts[1]`` a name,
    and so on; a text without references is one part."""

    parts: tuple[str, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return self.parts[1::2]

    def render(self, variables: Mapping[str, Value], *, shown: bool = False) -> str:
        """The text with each reference replaced by its variable's value; ``shown``: secrets
        replaced by ``<secret>``."""
        if len(self.parts) == 1:
            return self.parts[0]
        out = []
        for index, part in enumerate(self.parts):
            if index % 2 == 0:
                out.append(part)
                continue
            value = variables[part]
            out.append(SECRET if shown and value.secret else value.text())
        return "".join(out)

    def secret(self, variables: Mapping[str, Value]) -> bool:
        """Whether a secret value goes into the rendered text."""
        return any(variables[name].secret for name in self.names)


def parse(text: str, at: KeyPath, known: Iterable[str]) -> Template:
    """``text`` as a template whose references must be among ``known``."""
    parts = []
    position = 0
    names = set(known)
    for match in _REFERENCE.finditer(text):
        parts += [text[position : match.start()], match.group(1)]
        position = match.end()
    parts.append(text[position:])
    for index, part in enumerate(parts):
        if index % 2 == 0 and ("{{" in part or "}}" in part):
            raise ConfigProblem(
                at, f"{text!r}: '{{{{' and '}}}}' are only allowed around a variable name"
            )
        if index % 2 == 1 and part not in names:
            offered = ", ".join(sorted(names)) or "none"
            raise ConfigProblem(
                at,
                f"{{{{ {part} }}}}: no earlier step extracts {part!r} (variables here: {offered})",
            )
    return Template(tuple(parts))


def template_names(value: Any) -> set[str]:
    """Every name referenced anywhere in a JSON value's strings (keys included)."""
    if isinstance(value, str):
        return set(_REFERENCE.findall(value))
    if isinstance(value, list):
        return set().union(*(template_names(item) for item in value))
    if isinstance(value, dict):
        return set().union(*(template_names(k) | template_names(v) for k, v in value.items()))
    return set()


def check_json(value: Any, at: KeyPath, known: Iterable[str]) -> None:
    """Raise ``ConfigProblem`` where a string of the JSON value is not a valid template."""
    names = tuple(known)
    if isinstance(value, str):
        parse(value, at, names)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_json(item, (*at, index), names)
    elif isinstance(value, dict):
        for key, item in value.items():
            parse(key, (*at, key), names)
            check_json(item, (*at, key), names)


def render_json(value: Any, variables: Mapping[str, Value], *, shown: bool = False) -> Any:
    """A JSON body with its strings rendered (``check_json`` has accepted it)."""
    if isinstance(value, str):
        whole = _REFERENCE.fullmatch(value)
        if whole is not None:
            variable = variables[whole.group(1)]
            return SECRET if shown and variable.secret else variable.value
        return parse(value, (), variables).render(variables, shown=shown)
    if isinstance(value, list):
        return [render_json(item, variables, shown=shown) for item in value]
    if isinstance(value, dict):
        return {
            parse(k, (), variables).render(variables, shown=shown): render_json(
                v, variables, shown=shown
            )
            for k, v in value.items()
        }
    return value
