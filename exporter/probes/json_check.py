"""A JSON Schema expectation shared by kinds that check a JSON message (websocket replies):
loaded and checked at config load, applied to a text at probe time with a bounded message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from exporter.config_source import ConfigProblem, KeyPath, Source
from exporter.config_source import describe_error as describe_schema_error
from exporter.lazy_import import lazy_module
from exporter.probes.json_schema import SchemaValidator

if TYPE_CHECKING:
    import jsonschema
else:  # only for a target with a JSON Schema expectation
    jsonschema = lazy_module("jsonschema")

__all__ = ["JsonExpectation", "build_json_expectation"]


@dataclass(frozen=True, slots=True, eq=False)
class JsonExpectation:
    """A validated schema and its validator; ``check`` says why a text fails it, or None."""

    schema: Any
    validator: SchemaValidator

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JsonExpectation) and other.schema == self.schema

    def __hash__(self) -> int:
        return hash(json.dumps(self.schema, sort_keys=True))

    def check(self, text: str) -> tuple[bool, str]:
        """(passed, detail): whether ``text`` is JSON satisfying the schema, and why not."""
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            return False, f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        errors = sorted(self.validator.iter_errors(document), key=lambda e: list(e.path))
        if not errors:
            return True, "satisfies the schema"
        first = errors[0]
        where = "$" + "".join(
            f"[{p}]" if isinstance(p, int) else f".{p}" for p in first.absolute_path
        )
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return False, f"{where}: {first.message}{more}"


def build_json_expectation(value: Any, at: KeyPath, source: Source) -> JsonExpectation:
    """From an inline schema (mapping or boolean) or a path to a JSON file."""
    schema = value
    if isinstance(value, str):
        text = source.read_text(value, at)
        try:
            schema = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigProblem(
                at, f"{value}: invalid JSON at line {exc.lineno}: {exc.msg}"
            ) from None
    validator_class = jsonschema.validators.validator_for(schema, jsonschema.Draft202012Validator)
    try:
        validator_class.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ConfigProblem(at, f"not a valid JSON Schema: {describe_schema_error(exc)}") from None
    return JsonExpectation(schema, SchemaValidator(validator_class, schema))
