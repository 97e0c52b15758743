"""What an API's response announces besides its body: deprecation (``Sunset``, RFC 8594, and
``Deprecation``, RFC 9745), rate limiting and maintenance (``Retry-After`` on 429 and 503),
which version answered (a header or a JSON field, so a gateway that routes v1 to v2 is caught),
and whether an error answer follows its documented format (RFC 9457 problem details, or a
user's schema). The HTTP kind parses these here and checks them against ``expect``.

Header values are read leniently and never fail a probe by themselves: a value that cannot be
read counts as absent (its metric is absent) and, when an expectation needs it, fails that
check. Failure messages quote what the response said only with ``http.response_excerpts``
(``EXCERPT_CHARS`` characters at most), as the HTTP kind's other checks do.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC
from typing import TYPE_CHECKING, Any

from exporter.families import Family
from exporter.lazy_import import lazy_module
from exporter.probes.http_failures import EXCERPT_CHARS, excerpt
from exporter.probes.json_schema import SchemaValidator
from exporter.reasons import ProbeFailure, Reason
from exporter.results import ProbeTrace

if TYPE_CHECKING:
    from email import utils as email_utils

    import jsonschema
else:
    # Only probes read the dates in headers.
    email_utils = lazy_module("email.utils")
    # Only for a target with an error_format.
    jsonschema = lazy_module("jsonschema")

__all__ = [
    "DEPRECATION",
    "NO_SIGNALS",
    "PROBLEM_JSON_SCHEMA",
    "PROBLEM_JSON_TYPE",
    "RETRY_AFTER",
    "SUNSET",
    "ErrorFormat",
    "Signals",
    "VersionExpectation",
    "build_version",
    "check_error_format",
    "check_signals",
    "check_version",
    "problem_json",
    "read_signals",
]

SUNSET = Family(
    "lookout_http_sunset_timestamp_seconds",
    "gauge",
    "When the endpoint goes away, from the latest response's Sunset header (RFC 8594); absent "
    "without one.",
)
DEPRECATION = Family(
    "lookout_http_deprecation_timestamp_seconds",
    "gauge",
    "When the endpoint is or was deprecated, from the latest response's Deprecation header (RFC "
    "9745); absent without a dated one.",
)
RETRY_AFTER = Family(
    "lookout_http_retry_after_seconds",
    "gauge",
    "Seconds the latest 429 or 503 response asked to wait (Retry-After); absent otherwise.",
)

# Statuses whose Retry-After is exported and checked (RFC 9110 section 10.2.3, RFC 6585).
RETRY_STATUSES = frozenset({429, 503})
PROBLEM_JSON_TYPE = "application/problem+json"
# RFC 9457 section 3: the members' types; every member is optional and others may be added.
PROBLEM_JSON_SCHEMA: Mapping[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "RFC 9457 problem details",
    "type": "object",
    "properties": {
        "type": {"type": "string", "format": "uri-reference"},
        "status": {"type": "integer", "minimum": 100, "maximum": 599},
        "title": {"type": "string"},
        "detail": {"type": "string"},
        "instance": {"type": "string", "format": "uri-reference"},
    },
}
_STRUCTURED_DATE = re.compile(r"@(-?\d{1,15})")


def _quoted(value: str, excerpts: bool) -> str:
    """`` 'value'`` (cut to EXCERPT_CHARS) with ``excerpts``, else nothing."""
    return " " + excerpt(value) if excerpts else ""


@dataclass(frozen=True, slots=True)
class Signals:
    """The announcements of one response; None where the header is absent or unreadable."""

    sunset: float | None = None
    deprecation: float | None = None
    # A Deprecation header was there (also an undated one, as the drafts' "true").
    deprecated: bool = False
    retry_after: float | None = None
    # The raw Retry-After value of a 429 or 503 response, when it could not be read.
    retry_after_invalid: str | None = None


@dataclass(frozen=True, slots=True)
class ErrorFormat:
    """``expect.error_format``: what the body of a 4xx or 5xx answer must be."""

    name: str  # "problem+json", or the user's schema file (for messages)
    schema: Any
    content_type: str | None  # the media type the answer must have, None: any
    validator: SchemaValidator = field(compare=False, repr=False)


NO_SIGNALS = Signals()


@dataclass(frozen=True, slots=True)
class VersionExpectation:
    """``expect.version``: where the response says which version answered, and what it must
    say (``equals`` exactly, or ``matches`` a regex)."""

    header: str | None
    pointer: tuple[str, ...] | None  # a JSON Pointer (RFC 6901) into the body, parsed
    pointer_text: str
    equals: str | None
    pattern: re.Pattern[str] | None

    @property
    def where(self) -> str:
        return f"header {self.header}" if self.header is not None else f"{self.pointer_text}"

    @property
    def wanted(self) -> str:
        if self.equals is not None:
            return repr(self.equals)
        assert self.pattern is not None
        return f"matching {self.pattern.pattern!r}"


def build_version(raw: Mapping[str, Any], pattern: re.Pattern[str] | None) -> VersionExpectation:
    """From a schema-valid ``expect.version`` (``header`` or ``json_pointer``, ``equals`` or
    ``matches``; the caller compiles the regex, which reports its own errors)."""
    pointer = None
    text = raw.get("json_pointer", "")
    if "json_pointer" in raw:
        pointer = tuple(part.replace("~1", "/").replace("~0", "~") for part in text.split("/")[1:])
    equals = raw.get("equals")
    return VersionExpectation(
        raw.get("header"), pointer, text, None if equals is None else str(equals), pattern
    )


def _pointed(document: Any, pointer: tuple[str, ...]) -> tuple[bool, Any]:
    for part in pointer:
        if isinstance(document, dict) and part in document:
            document = document[part]
        elif isinstance(document, list) and part.isdigit() and int(part) < len(document):
            document = document[int(part)]
        else:
            return False, None
    return True, document


def check_version(
    expected: VersionExpectation,
    headers: Mapping[str, str],
    body: str,
    trace: ProbeTrace,
    excerpts: bool = False,
) -> list[ProbeFailure]:
    """The response names the expected version where ``expected`` says it does."""
    value: str | None
    if expected.header is not None:
        value = headers.get(expected.header)
        missing = f"the response does not say which version answered (no {expected.header})"
    else:
        assert expected.pointer is not None
        missing = f"the response does not say which version answered (no {expected.pointer_text})"
        try:
            found, member = _pointed(json.loads(body), expected.pointer)
        except json.JSONDecodeError:
            found, member = False, None
            missing = (
                f"the response does not say which version answered (the body is not JSON, "
                f"{expected.pointer_text} expected)"
            )
        value = None
        if found:
            value = member if isinstance(member, str) else json.dumps(member)
    if value is None:
        trace.check("version", False, missing)
        return [ProbeFailure(Reason.VERSION, missing)]
    if expected.equals is not None:
        passed = value == expected.equals
    else:
        assert expected.pattern is not None
        passed = expected.pattern.search(value) is not None
    said = _quoted(value, excerpts)
    detail = f"{expected.where} says{said or ' another version'}, expected {expected.wanted}"
    if not trace.check("version", passed, detail):
        return [ProbeFailure(Reason.VERSION, f"another version answered: {detail}")]
    return []


def problem_json() -> ErrorFormat:
    return ErrorFormat(
        "problem+json",
        PROBLEM_JSON_SCHEMA,
        PROBLEM_JSON_TYPE,
        SchemaValidator(jsonschema.Draft202012Validator, PROBLEM_JSON_SCHEMA),
    )


def _http_date(value: str) -> float | None:
    try:
        moment = email_utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:  # RFC 9110 dates are GMT; "-0000" parses as naive
        return moment.replace(tzinfo=UTC).timestamp()
    return moment.timestamp()


def _deprecation(value: str) -> float | None:
    """RFC 9745's ``@1688169599``; earlier drafts' HTTP-date is read too."""
    match = _STRUCTURED_DATE.fullmatch(value.strip())
    if match is not None:
        return float(match.group(1))
    return _http_date(value)


def read_signals(headers: Mapping[str, str], status: int, now: float) -> Signals:
    """The announcements in ``headers`` of a response with ``status``, received at ``now``."""
    sunset_value = headers.get("Sunset")
    deprecation_value = headers.get("Deprecation")
    retry_value = headers.get("Retry-After") if status in RETRY_STATUSES else None
    if sunset_value is None and deprecation_value is None and retry_value is None:
        return NO_SIGNALS  # most responses: one shared value rather than one per target
    retry_after = None
    invalid = None
    if retry_value is not None:
        text = retry_value.strip()
        if text.isascii() and text.isdigit():
            retry_after = float(text)
        else:
            at = _http_date(text)
            if at is None:
                invalid = retry_value
            else:
                # Relative to the response's own Date when it has one (clock skew).
                sent = _http_date(headers.get("Date", "")) or now
                retry_after = max(0.0, at - sent)
    return Signals(
        sunset=None if sunset_value is None else _http_date(sunset_value),
        deprecation=None if deprecation_value is None else _deprecation(deprecation_value),
        deprecated=deprecation_value is not None,
        retry_after=retry_after,
        retry_after_invalid=invalid,
    )


def check_signals(
    signals: Signals,
    status: int,
    deprecated: bool | None,
    retry_after_required: bool,
    trace: ProbeTrace,
    excerpts: bool = False,
) -> list[ProbeFailure]:
    """``expect.deprecated`` (true: a Sunset or Deprecation header must announce it; false:
    neither may) and ``expect.retry_after: required`` (a 429 or 503 must say when to retry)."""
    failures = []
    announced = signals.deprecated or signals.sunset is not None
    if deprecated is True and not trace.check(
        "deprecated",
        announced,
        "a Sunset or Deprecation header must announce the deprecation, neither is there",
    ):
        failures.append(ProbeFailure(Reason.HEADER, trace.checks[-1].detail))
    if deprecated is False and not trace.check(
        "not deprecated",
        not announced,
        "the response announces a deprecation (Sunset or "
        "Deprecation header) although this version is not deprecated",
    ):
        failures.append(ProbeFailure(Reason.HEADER, trace.checks[-1].detail))
    if retry_after_required and status in RETRY_STATUSES:
        if signals.retry_after_invalid is not None:
            shown = _quoted(signals.retry_after_invalid, excerpts)
            detail = f"Retry-After{shown} is neither seconds nor a date"
        elif signals.retry_after is None:
            detail = f"a {status} answer must say when to retry (Retry-After), it does not"
        else:
            detail = f"Retry-After {signals.retry_after:g} s"
        if not trace.check("retry_after", signals.retry_after is not None, detail):
            failures.append(ProbeFailure(Reason.HEADER, detail))
    return failures


def check_error_format(
    expected: ErrorFormat,
    status: int,
    content_type: str,
    body: str,
    trace: ProbeTrace,
    violation: Callable[[jsonschema.ValidationError], str],
    excerpts: bool = False,
) -> list[ProbeFailure]:
    """For a 4xx or 5xx answer: the body follows ``expected`` (media type, JSON, schema and,
    for problem details, a ``status`` member equal to the response's)."""
    if not 400 <= status <= 599:
        return []
    name = expected.name
    media = content_type.split(";", 1)[0].strip().lower()
    if expected.content_type is not None and media != expected.content_type:
        got = (_quoted(media, excerpts).strip() or "another") if media else "none"
        detail = f"a {status} answer must be {expected.content_type}, its content type is {got}"
        trace.check("error_format", False, detail)
        return [ProbeFailure(Reason.ERROR_FORMAT, detail)]
    try:
        document = json.loads(body)
    except json.JSONDecodeError as exc:
        detail = f"the {status} answer is not JSON ({name}): {exc.msg} at line {exc.lineno}"
        trace.check("error_format", False, detail)
        return [ProbeFailure(Reason.ERROR_FORMAT, detail)]
    errors = sorted(expected.validator.iter_errors(document), key=lambda e: list(e.path))
    if errors:
        first = errors[0]
        where = "$" + "".join(
            f"[{p}]" if isinstance(p, int) else f".{p}" for p in first.absolute_path
        )
        detail = f"the {status} answer does not follow {name}: {where}: {violation(first)}"
        trace.check("error_format", False, detail)
        return [ProbeFailure(Reason.ERROR_FORMAT, detail)]
    if (
        expected.content_type == PROBLEM_JSON_TYPE
        and isinstance(document, dict)
        and "status" in document
        and document["status"] != status
    ):
        said = f" {json.dumps(document['status'])[:EXCERPT_CHARS]}" if excerpts else ""
        detail = f"the problem details' status{said} is not the response's {status}"
        trace.check("error_format", False, detail)
        return [ProbeFailure(Reason.ERROR_FORMAT, detail)]
    trace.check("error_format", True, f"the {status} answer follows {name}")
    return []
