"""A small client of Prometheus' HTTP query API (also Thanos and Mimir, which serve the same
API): instant queries, range queries and series, with an optional bearer token and CA bundle.

Every failure is a ``PrometheusError`` whose message says which URL failed and why, for the
command to print as it is.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Prometheus", "PrometheusError", "Series"]

# Prometheus refuses range queries of more than 11,000 points per series.
MAX_POINTS = 11_000


class PrometheusError(Exception):
    """Prometheus could not be reached, or refused a query."""


@dataclass(frozen=True, slots=True)
class Series:
    """One series of a result: its labels and its (time, value) points."""

    labels: dict[str, str]
    points: list[tuple[float, float]]


class Prometheus:
    def __init__(
        self,
        url: str,
        *,
        bearer_token_file: Path | None = None,
        ca_file: Path | None = None,
        timeout: float = 60.0,
    ) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise PrometheusError(f"--prometheus.url {url!r}: expected http:// or https://HOST")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._headers = {"Accept": "application/json"}
        if bearer_token_file is not None:
            try:
                token = bearer_token_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise PrometheusError(
                    f"--prometheus.bearer-token-file {bearer_token_file}: {exc.strerror or exc}"
                ) from None
            self._headers["Authorization"] = f"Bearer {token}"
        self._context: ssl.SSLContext | None = None
        if ca_file is not None:
            try:
                self._context = ssl.create_default_context(cafile=str(ca_file))
            except (OSError, ssl.SSLError) as exc:
                raise PrometheusError(f"--prometheus.ca-file {ca_file}: {exc}") from None

    def _get(self, path: str, params: dict[str, str]) -> Any:
        url = f"{self.url}/api/v1/{path}"
        body = urllib.parse.urlencode(params).encode()
        request = urllib.request.Request(url, data=body, headers=self._headers, method="POST")
        request.add_header("Content-Type", "application/x-www-form-urlencoded")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self._context) as r:
                payload = json.loads(r.read())
        except urllib.error.HTTPError as exc:
            try:
                payload = json.loads(exc.read())
            except ValueError:
                raise PrometheusError(f"{url}: HTTP {exc.code} {exc.reason}") from None
        except urllib.error.URLError as exc:
            raise PrometheusError(f"cannot reach Prometheus at {self.url}: {exc.reason}") from None
        except (OSError, ValueError) as exc:
            raise PrometheusError(f"cannot reach Prometheus at {self.url}: {exc}") from None
        if not isinstance(payload, dict) or payload.get("status") != "success":
            error = payload.get("error") if isinstance(payload, dict) else payload
            raise PrometheusError(f"{url}: {params.get('query', '')!s}: {error}")
        return payload["data"]

    def instant(self, query: str, at: float) -> list[Series]:
        """The vector ``query`` returns at ``at``; a range vector's raw samples as points."""
        data = self._get("query", {"query": query, "time": f"{at:.3f}"})
        if data["resultType"] == "scalar":
            return [Series({}, [(float(data["result"][0]), float(data["result"][1]))])]
        return [_series(item) for item in data["result"]]

    def range(self, query: str, start: float, end: float, step: float) -> list[Series]:
        """``query`` evaluated every ``step`` seconds from ``start`` to ``end``."""
        params = {"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
        return [_series(item) for item in self._get("query_range", params)["result"]]

    def series(self, match: str, start: float, end: float) -> list[dict[str, str]]:
        """The label sets of the series matching ``match`` between ``start`` and ``end``."""
        data = self._get("series", {"match[]": match, "start": f"{start:.3f}", "end": f"{end:.3f}"})
        return [dict(item) for item in data]


def _series(item: dict[str, Any]) -> Series:
    values = item.get("values") or ([item["value"]] if "value" in item else [])
    return Series(dict(item["metric"]), [(float(t), float(v)) for t, v in values])
