"""Checks a config document against the published JSON Schema, fast, in jsonschema's words.

``config.schema.json`` (published as ``docs/config.schema.json``) is the contract. jsonschema
walks it at about 0.8 ms per target (its ``unevaluatedProperties`` re-evaluates every kind's
``if``), 8 s for 10,000 targets, and dispatching each target to its kind's subschema still leaves
0.6 ms. So two validators share the work:

- jsonschema-rs, compiled once, says whether the whole document is valid: about 0.1 s for 10,000
  targets. Rust's regular expressions and Python's disagree at the edges (``\\s``, ``.``, ``$``),
  so both validators accept the same strings only where a pattern means the same to both: a
  pattern written with nothing but literal characters, ASCII classes, groups, alternatives and
  quantifiers, anchored by ``^`` and a final ``$`` (which Python also matches before a final
  newline, so Rust gets ``\\n?$``), is checked by jsonschema-rs itself; every other ``pattern``
  calls back into Python's ``re`` (``tests/test_config_schema_patterns.py`` holds the two to the
  same answers).
- jsonschema words the errors, and runs only where jsonschema-rs found some: on the top level with
  its lists emptied, and on each list item (a target, a heartbeat) that is invalid on its own.

Each item is checked exactly as it is inside the whole document (the lists' schemas are a plain
``items``), so the problems are those of checking the whole document with jsonschema alone;
``problems_fully`` does that, and the tests hold the two to the same answers.
"""

from __future__ import annotations

import copy
import difflib
import json
import re
from collections.abc import Iterable, Iterator
from functools import cache, cached_property
from importlib import resources
from typing import TYPE_CHECKING, Any

from exporter.config_source import ConfigProblem, KeyPath, describe_error
from exporter.lazy_import import lazy_module

if TYPE_CHECKING:
    import jsonschema
    import jsonschema_rs
else:
    # Only to word the errors of an invalid config.
    jsonschema = lazy_module("jsonschema")
    # Only where a config is checked: the exporter's own process loads its config in a
    # worker process (config_process), and the compiled validator is about 7 MiB resident.
    jsonschema_rs = lazy_module("jsonschema_rs")

__all__ = ["SchemaCheck", "schema", "schema_check"]


def schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) every config must satisfy."""
    text = resources.files("exporter").joinpath("config.schema.json").read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


@cache
def schema_check() -> SchemaCheck:
    """The checker of the packaged schema, compiled once per process."""
    return SchemaCheck(schema())


class SchemaCheck:
    def __init__(self, root: dict[str, Any]) -> None:
        self._root = root
        patterns: dict[str, Any] = {}
        compiled = _with_python_patterns(root, patterns)
        self._fast = jsonschema_rs.validator_for(compiled, formats=patterns, validate_formats=True)
        # Top-level lists checked item by item: those whose schema is exactly an ``items``.
        self._lists: dict[str, tuple[Any, dict[str, Any]]] = {}
        for key, sub in root.get("properties", {}).items():
            if set(sub) == {"type", "items"} and sub["type"] == "array":
                fast_item = {**compiled["properties"][key]["items"]}
                fast_item.update({k: compiled[k] for k in ("$schema", "$id", "$defs")})
                self._lists[key] = (
                    jsonschema_rs.validator_for(fast_item, formats=patterns, validate_formats=True),
                    sub["items"],
                )

    @cached_property
    def _validator(self) -> jsonschema.protocols.Validator:
        """jsonschema's validator of the whole schema, made when there are errors to word."""
        return jsonschema.Draft202012Validator(self._root)

    def problems(self, document: dict[str, Any]) -> list[ConfigProblem]:
        """Every schema problem of ``document``, as ``problems_fully`` finds them, fast."""
        if _fast_valid(self._fast, document):
            return []
        skeleton = dict(document)
        items: list[tuple[str, int, Any, jsonschema.protocols.Validator]] = []
        for key, (fast, item_schema) in self._lists.items():
            if isinstance(skeleton.get(key), list):
                skeleton[key] = []
                validator = None
                for index, item in enumerate(document[key]):
                    if not _fast_valid(fast, item):
                        validator = validator or self._validator.evolve(schema=item_schema)
                        items.append((key, index, item, validator))
        found = self._word((), self._validator.iter_errors(skeleton))
        for key, index, item, validator in items:
            found.extend(self._word((key, index), validator.iter_errors(item)))
        return found

    def problems_fully(self, document: dict[str, Any]) -> list[ConfigProblem]:
        """Every schema problem of ``document``, found by jsonschema alone on the whole of it."""
        return self._word((), self._validator.iter_errors(document))

    def _word(
        self, prefix: KeyPath, errors: Iterable[jsonschema.ValidationError]
    ) -> list[ConfigProblem]:
        listed = list(errors)
        deeper = [
            (*prefix, *e.absolute_path) for e in listed if e.validator != "unevaluatedProperties"
        ]
        found: list[ConfigProblem] = []
        for error in listed:
            at: KeyPath = (*prefix, *error.absolute_path)
            if error.validator == "unevaluatedProperties" and any(
                p[: len(at)] == at for p in deeper
            ):
                # A kind's section failed; its keys then count as unevaluated. Report the cause.
                continue
            if error.validator in ("unevaluatedProperties", "additionalProperties"):
                found.extend(self._unknown_keys(at, error))
            else:
                found.append(ConfigProblem(at, describe_error(error)))
        return found

    def _unknown_keys(
        self, at: KeyPath, error: jsonschema.ValidationError
    ) -> Iterator[ConfigProblem]:
        """One problem per unknown key, at the key itself, with the key probably meant."""
        node: Any = error.schema
        instance: Any = error.instance
        known = sorted(self._declared(node, instance))
        patterns = [re.compile(p) for p in node.get("patternProperties", {})]
        unknown = [
            k for k in instance if k not in known and not any(p.search(str(k)) for p in patterns)
        ]
        if not unknown:  # a key the walk below does not see: jsonschema's own words
            yield ConfigProblem(at, f"unknown key: {error.message}")
            return
        for key in unknown:
            close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
            if close:
                hint = f"did you mean `{close[0]}`?"
            else:
                hint = "expected one of " + ", ".join(known) if known else "no keys allowed here"
            yield ConfigProblem((*at, key), f"unknown key, {hint}")

    def _declared(self, node: Any, instance: Any) -> set[str]:
        """The keys that ``node`` declares for ``instance``, following ``$ref``, ``allOf``,
        the valid ``anyOf``/``oneOf`` branches and the ``if``/``then``/``else`` that applies."""
        if not isinstance(node, dict):
            return set()
        keys = set(node.get("properties", {}))
        if "$ref" in node:
            keys |= self._declared(self._resolve(node["$ref"]), instance)
        for sub in node.get("allOf", ()):
            keys |= self._declared(sub, instance)
        for sub in (*node.get("anyOf", ()), *node.get("oneOf", ())):
            if self._validator.evolve(schema=sub).is_valid(instance):
                keys |= self._declared(sub, instance)
        if "if" in node:
            if self._validator.evolve(schema=node["if"]).is_valid(instance):
                keys |= self._declared(node["if"], instance)
                keys |= self._declared(node.get("then"), instance)
            else:
                keys |= self._declared(node.get("else"), instance)
        return keys

    def _resolve(self, ref: str) -> Any:
        """A local ``#/...`` reference of the schema (the only kind it uses)."""
        node: Any = self._root
        for part in ref.removeprefix("#/").split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node


def _fast_valid(validator: Any, instance: Any) -> bool:
    """jsonschema-rs's answer; an instance it cannot take counts as invalid, for jsonschema."""
    try:
        return bool(validator.is_valid(instance))
    except Exception:
        return False


# Keywords whose value maps names (not keywords) to schemas or lists.
_NAMED = {"properties", "patternProperties", "$defs", "dependentSchemas", "dependentRequired"}


# What a pattern may be written with to mean the same to Python's ``re`` and to jsonschema-rs:
# literal letters, digits and ``_@:/,=-``, escaped metacharacters, classes of
# printable ASCII without escapes, nested brackets or the set operators of Rust's classes
# (``&&``, ``--``, ``~~``), groups, alternatives and quantifiers; no ``.``, ``\\s``, ``\\d``, flags.
_PORTABLE = re.compile(
    r"\^?(?:[A-Za-z0-9_@:/,=-]|\\[.$\[\]{}()*+?|^]|\[\^?(?:[ -Z^-~]|\])?(?:[ -Z^-~])*\]"
    r"|\((?:\?:)?|[)|?*+]|\{[0-9]+(?:,[0-9]*)?\})*\$?"
)


def portable_pattern(pattern: str) -> str | None:
    """``pattern`` as jsonschema-rs must be given it to accept exactly the strings that
    Python's ``re.search`` finds it in; None when that is not known to be so."""
    if not _PORTABLE.fullmatch(pattern) or any(op in pattern for op in ("&&", "--", "~~")):
        return None
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        return pattern[:-1] + "\\n?$"
    return pattern


def _with_python_patterns(node: Any, formats: dict[str, Any]) -> Any:
    """A copy of the schema with every ``pattern`` that does not mean the same to Rust
    (``portable_pattern``) turned into a ``format`` that Python checks."""
    if isinstance(node, list):
        return [_with_python_patterns(item, formats) for item in node]
    if not isinstance(node, dict):
        return copy.deepcopy(node)
    result: dict[str, Any] = {}
    for key, value in node.items():
        if key == "pattern" and isinstance(value, str) and portable_pattern(value) is not None:
            result[key] = portable_pattern(value)
        elif key == "pattern" and isinstance(value, str):
            if "format" in node:
                raise ValueError("a schema node with both a pattern and a format")
            name = f"python-pattern-{len(formats)}"
            search = re.compile(value).search
            formats[name] = lambda text, search=search: search(text) is not None
            result["format"] = name
        elif key in _NAMED and isinstance(value, dict):
            result[key] = {k: _with_python_patterns(v, formats) for k, v in value.items()}
        else:
            result[key] = _with_python_patterns(value, formats)
    return result
