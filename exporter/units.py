"""Parsing of the human units used in the config: durations, sizes and HTTP status patterns.

Kept apart from ``config`` because probes, heartbeats and the CLI format the same units back.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

__all__ = [
    "MAX_DURATION",
    "MAX_SIZE",
    "StatusPattern",
    "format_duration",
    "parse_duration",
    "parse_size",
    "parse_status",
]

# The longest duration a config may hold (a year): far beyond any interval, grace or validity
# the exporter works with, and small enough that a deadline stays a representable date.
MAX_DURATION = 365 * 86400.0
# The largest size a config may hold (1 TiB): a body limit beyond it is no limit at all.
MAX_SIZE = 1024**4

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|KiB|MiB|GiB|k|K|M|G)?")
_SIZE_UNITS = {
    None: 1,
    "B": 1,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "k": 1000,
    "K": 1000,
    "M": 1000**2,
    "G": 1000**3,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
}


@functools.lru_cache(maxsize=1024)  # a few durations shared by thousands of targets
def parse_duration(text: str) -> float:
    """Seconds in ``500ms``, ``30s``, ``5m``, ``1h30m``, ``2d``, at most ``MAX_DURATION``;
    raises ValueError otherwise."""
    pos = 0
    total = 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if pos == 0 or pos != len(text):
        raise ValueError(f"invalid duration {text!r} (use e.g. 500ms, 30s, 5m, 1h30m, 2d)")
    if total > MAX_DURATION:
        raise ValueError(f"duration {_shorten(text)} is longer than the maximum of 365d")
    return total


def format_duration(seconds: float) -> str:
    """The shortest readable form of a duration, the inverse of ``parse_duration`` for display."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:g}s"


def parse_size(text: str | int) -> int:
    """Bytes in ``512KiB``, ``1MB``, ``1000``, at most ``MAX_SIZE``; raises ValueError otherwise."""
    if isinstance(text, int):
        size: float = text
    else:
        match = _SIZE.fullmatch(text.strip())
        if match is None:
            raise ValueError(f"invalid size {text!r} (use e.g. 512KiB, 1MiB, 1000)")
        size = float(match.group(1)) * _SIZE_UNITS[match.group(2)]
    if size > MAX_SIZE:
        raise ValueError(f"size {_shorten(str(text))} is larger than the maximum of 1TiB")
    return int(size)


@dataclass(frozen=True, slots=True)
class StatusPattern:
    """An inclusive range of status codes written as ``200``, ``2xx`` or ``200-299``."""

    low: int
    high: int
    text: str

    def matches(self, code: int) -> bool:
        return self.low <= code <= self.high


@functools.lru_cache(maxsize=256)  # a few patterns shared by thousands of targets
def parse_status(text: str | int) -> StatusPattern:
    raw = str(text).strip()
    if re.fullmatch(r"[1-5]xx", raw, re.IGNORECASE):
        low = int(raw[0]) * 100
        return StatusPattern(low, low + 99, raw.lower())
    if re.fullmatch(r"\d{3}", raw):
        return StatusPattern(int(raw), int(raw), raw)
    match = re.fullmatch(r"(\d{3})-(\d{3})", raw)
    if match and int(match.group(1)) <= int(match.group(2)):
        return StatusPattern(int(match.group(1)), int(match.group(2)), raw)
    if match:
        start, end = match.group(2), match.group(1)
        raise ValueError(f"status range {raw!r} ends below its start (write {start}-{end})")
    raise ValueError(f"invalid status pattern {raw!r} (use e.g. 200, 2xx, 200-299)")


def _shorten(text: str) -> str:
    """A value quoted in a message, cut to a readable length."""
    return repr(text) if len(text) <= 40 else repr(text[:20] + "...") + f" ({len(text)} characters)"
