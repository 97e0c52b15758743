"""The report's period: a calendar month (``--month 2026-11``, in UTC) or ``--from``/``--to``."""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = ["Period", "parse_month", "parse_time"]


@dataclass(frozen=True, slots=True)
class Period:
    start: float
    end: float
    title: str

    @property
    def seconds(self) -> float:
        return self.end - self.start


def parse_month(text: str) -> Period:
    """``YYYY-MM``: the month from its first midnight to the next month's, UTC."""
    found = re.fullmatch(r"(\d{4})-(\d{2})", text)
    if not found or not 1 <= int(found.group(2)) <= 12:
        raise ValueError(f"--month {text!r}: expected YYYY-MM, such as 2026-11")
    year, month = int(found.group(1)), int(found.group(2))
    start = datetime(year, month, 1, tzinfo=UTC)
    days = calendar.monthrange(year, month)[1]
    end = start.timestamp() + days * 86400
    return Period(start.timestamp(), end, start.strftime("%B %Y"))


def parse_time(text: str, option: str) -> float:
    """An RFC 3339 time (``2026-11-01T00:00:00Z``), a date (midnight UTC) or Unix seconds."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{option} {text!r}: expected a date (2026-11-01), an RFC 3339 time "
            "(2026-11-01T00:00:00Z) or Unix seconds"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def between(start: float, end: float) -> Period:
    if end <= start:
        raise ValueError("--to must be after --from")
    title = f"{_day(start)} to {_day(end)}"
    return Period(start, end, title)


def _day(at: float) -> str:
    moment = datetime.fromtimestamp(at, UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC" if moment.hour or moment.minute else "%Y-%m-%d")
