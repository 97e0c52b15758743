"""JSON Schemas for ``expect.json_schema``, compiled at config load with every ``$ref`` resolved.

A schema and the documents its ``$ref`` values point to are read once, when the config is
loaded: from files (relative references resolve against the schema's file, or against the
config's folder for a schema written inline), and from ``http(s)://`` only when the target sets
``expect.json_schema_remote_refs``, each fetched once with ``expect.json_schema_fetch_timeout``
for the whole download. Loading runs before the event loop starts or, on reload, in a worker
thread, so a schema host that never answers delays only that load, never a probe or a scrape.

The validator gets a registry holding exactly those documents and no way to fetch more: a
reference that was not resolved at load cannot make a probe do I/O; it fails the probe's check
(``Unresolvable``), which ``reference_error`` words.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urldefrag, urljoin, urlsplit

from exporter.config_source import ConfigProblem, KeyPath, Source
from exporter.config_source import describe_error as describe_schema_error
from exporter.lazy_import import lazy_module

if TYPE_CHECKING:
    from urllib import error as url_error
    from urllib import request as url_request

    import jsonschema
    import referencing
    import referencing.exceptions
    import referencing.jsonschema

    Unresolvable = referencing.exceptions.Unresolvable
else:  # only for a target with a json_schema (referencing is imported by compile_schema)
    jsonschema = lazy_module("jsonschema")
    # Only for a schema that references a document by URL.
    url_request = lazy_module("urllib.request")
    url_error = lazy_module("urllib.error")

    def __getattr__(name: str) -> Any:
        """``Unresolvable``, imported when first read."""
        if name == "Unresolvable":
            import referencing.exceptions

            return referencing.exceptions.Unresolvable
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "FETCH_LIMIT",
    "RefSettings",
    "SchemaValidator",
    "Unresolvable",
    "compile_schema",
    "reference_error",
]

# A referenced document larger than this is refused (it would be held for the config's life).
FETCH_LIMIT = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class RefSettings:
    """How far a schema's references may reach: files always, http(s) only when allowed."""

    allow_remote: bool = False
    fetch_timeout: float = 5.0


class _Refused(Exception):
    """A reference that cannot be loaded, with the reason in words."""


class SchemaValidator:
    """A compiled validator that pickles as the documents it was built from, and is built again
    from them when unpickled: configs are loaded in a worker process and sent to the exporter,
    and a validator's registry holds functions that cannot be pickled. ``base`` None: a schema
    without references of its own (the built-in ones)."""

    __slots__ = ("_built_from", "_validator")

    def __init__(
        self,
        validator_class: type[jsonschema.protocols.Validator],
        schema: Any,
        base: str | None = None,
        documents: tuple[tuple[str, Any], ...] = (),
    ) -> None:
        self._built_from = (validator_class, schema, base, documents)
        checker = validator_class.FORMAT_CHECKER
        if base is None:
            self._validator = validator_class(schema, format_checker=checker)
            return
        specification = _specification(schema, validator_class.META_SCHEMA.get("$schema", ""))
        root = specification.create_resource(schema)
        registry = _registry(root, base, documents)
        rooted = schema
        if isinstance(schema, dict) and root.id() is None:
            # Relative references resolve against the schema's own place.
            draft = specification.name in ("draft-03", "draft-04")
            rooted = {"id" if draft else "$id": base, **schema}
        self._validator = validator_class(rooted, registry=registry, format_checker=checker)

    def __reduce__(self) -> tuple[type[SchemaValidator], tuple[Any, ...]]:
        return (SchemaValidator, self._built_from)

    def iter_errors(self, instance: Any) -> Iterator[jsonschema.ValidationError]:
        return self._validator.iter_errors(instance)


def compile_schema(
    value: Any, at: KeyPath, source: Source, refs: RefSettings
) -> tuple[Any, SchemaValidator]:
    """The schema (a file path, or the schema itself) and its validator, every reference
    loaded; ``ConfigProblem`` at ``at`` when the schema or a reference is unusable."""
    if isinstance(value, str):
        path = source.path(value).resolve()
        schema = _parse(source.read_text(value, at), value, at)
        base = path.as_uri()
    else:
        schema = value
        base = source.base_dir.resolve().as_uri() + "/"
    validator_class = jsonschema.validators.validator_for(schema, jsonschema.Draft202012Validator)
    try:
        validator_class.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ConfigProblem(at, f"not a valid JSON Schema: {describe_schema_error(exc)}") from None
    dialect = validator_class.META_SCHEMA.get("$schema", "")
    root = _specification(schema, dialect).create_resource(schema)
    documents = _load_references(root, base, at, refs, source)
    return schema, SchemaValidator(validator_class, schema, base, documents)


def _parse(text: str, name: str, at: KeyPath) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigProblem(at, f"{name}: invalid JSON at line {exc.lineno}: {exc.msg}") from None


def _specification(document: Any, dialect: str) -> referencing.Specification[Any]:
    """The draft ``document`` names with ``$schema`` (else ``dialect``, else 2020-12)."""
    import referencing.jsonschema

    if isinstance(document, dict) and isinstance(document.get("$schema"), str):
        dialect = document["$schema"]
    return referencing.jsonschema.specification_with(
        dialect, default=referencing.jsonschema.DRAFT202012
    )


def _registry(
    root: referencing.Resource[Any], base: str, documents: tuple[tuple[str, Any], ...]
) -> referencing.Registry[Any]:
    """The metaschemas, the root (under ``base``) and the referenced ``documents``."""
    from jsonschema_specifications import REGISTRY as metaschemas

    registry: referencing.Registry[Any] = metaschemas.with_resource(base, root)
    if root.id() is not None:
        registry = registry.with_resource(str(root.id()), root)
    for uri, document in documents:
        registry = registry.with_resource(
            uri, _specification(document, "").create_resource(document)
        )
    return registry.crawl()


def _load_references(
    root: referencing.Resource[Any], base: str, at: KeyPath, refs: RefSettings, source: Source
) -> tuple[tuple[str, Any], ...]:
    """Every document reachable by ``$ref`` from the root (under ``base``), each loaded once,
    as (URI, document); the metaschemas are known already."""
    from jsonschema_specifications import REGISTRY as metaschemas

    known = {base, str(root.id() or base)}
    documents: list[tuple[str, Any]] = []
    pending = [(str(root.id() or base), root.contents)]
    while pending:
        uri, contents = pending.pop()
        for ref in _references(contents):
            target, _fragment = urldefrag(urljoin(uri, ref))
            if not target or target in known or target in metaschemas:
                continue
            try:
                document = _fetch(target, refs, source)
            except _Refused as exc:
                raise ConfigProblem(at, f"$ref {ref!r} (in {_short(uri)}): {exc}") from None
            known.add(target)
            documents.append((target, document))
            pending.append((target, document))
    return tuple(documents)


def _references(contents: Any) -> Iterator[str]:
    """Every ``$ref`` and ``$dynamicRef`` string in a schema document, nested ones included."""
    stack = [contents]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("$ref", "$dynamicRef") and isinstance(value, str):
                    yield value
                elif key not in ("const", "enum", "examples", "default"):
                    stack.append(value)
        elif isinstance(node, list):
            stack.extend(node)


def _fetch(uri: str, refs: RefSettings, source: Source) -> Any:
    """The JSON document at ``uri``, read once per config load (``source.fetched``)."""
    cached = source.fetched.get(uri)
    if cached is not None:
        return cached
    scheme = urlsplit(uri).scheme
    if scheme == "file":
        path = Path(unquote(urlsplit(uri).path))
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise _Refused(f"cannot read file {str(path)!r}: {exc.strerror}") from None
    elif scheme in ("http", "https"):
        if not refs.allow_remote:
            raise _Refused(
                "remote references are not fetched unless expect.json_schema_remote_refs is "
                "true; or save the document as a file next to the schema"
            )
        data = _download(uri, refs.fetch_timeout)
    else:
        raise _Refused(f"cannot load a {scheme or 'relative'!s} reference {uri!r}")
    if len(data) > FETCH_LIMIT:
        raise _Refused(f"{_short(uri)} is larger than {FETCH_LIMIT} bytes")
    try:
        document = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _Refused(f"{_short(uri)} is not JSON: {exc}") from None
    source.fetched[uri] = document
    return document


def _download(uri: str, timeout: float) -> bytes:
    """The body at ``uri``, within ``timeout`` for the whole download, at most FETCH_LIMIT + 1
    bytes. Runs at config load, off the event loop."""
    deadline = time.monotonic() + timeout
    request = url_request.Request(uri, headers={"Accept": "application/json"})
    try:
        with url_request.urlopen(request, timeout=timeout) as response:
            if response.status != 200:
                raise _Refused(f"{uri} answered {response.status}")
            chunks: list[bytes] = []
            size = 0
            while size <= FETCH_LIMIT:
                if time.monotonic() > deadline:
                    raise TimeoutError
                chunk = response.read1(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
            return b"".join(chunks)
    except TimeoutError:
        raise _Refused(
            f"fetching {uri} took longer than {timeout:g}s (expect.json_schema_fetch_timeout)"
        ) from None
    except url_error.HTTPError as exc:
        raise _Refused(f"{uri} answered {exc.code}") from None
    except (url_error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, TimeoutError):
            raise _Refused(
                f"fetching {uri} took longer than {timeout:g}s (expect.json_schema_fetch_timeout)"
            ) from None
        raise _Refused(f"cannot fetch {uri}: {reason}") from None


def _short(uri: str) -> str:
    return unquote(urlsplit(uri).path) if uri.startswith("file:") else uri


def reference_error(exc: referencing.exceptions.Unresolvable) -> str:
    """A reference met while validating that was not loaded with the config."""
    return f"schema reference {exc.ref!r} was not loaded with the config (not followed)"
