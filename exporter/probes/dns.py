"""The DNS prober: one query to one nameserver with dnspython's asyncio functions, then checks.

The query goes over UDP (falling back to TCP when the answer is truncated, as resolvers do) or
over TCP, to the configured nameserver or else the first one in /etc/resolv.conf. The query time
is the phase ``query``; the number of answer records of the queried type is
``lookout_dns_answers``. Checks: accepted rcodes, answer count, regexes on the answers' text
(any / all / none must match) and an exact expected set.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdata

from exporter.reasons import ProbeFailure, Reason
from exporter.results import ProbeTrace
from exporter.targets import DnsExpect, DnsSpec, Target

if TYPE_CHECKING:
    from exporter.probes.context import ProbeContext

__all__ = ["SystemNameserver", "probe"]

RESOLV_CONF = "/etc/resolv.conf"


@dataclass(slots=True)
class SystemNameserver:
    """The first ``nameserver`` of resolv.conf, read again only when the file changes."""

    path: str = RESOLV_CONF
    _mtime: float | None = field(default=None, init=False)
    _address: str | None = field(default=None, init=False)

    def get(self) -> str:
        try:
            mtime = os.stat(self.path).st_mtime
        except OSError as exc:
            raise ProbeFailure(Reason.DNS, f"cannot read {self.path}: {exc.strerror}") from exc
        if mtime != self._mtime:
            self._address = _first_nameserver(self.path)
            self._mtime = mtime
        if self._address is None:
            raise ProbeFailure(Reason.DNS, f"no nameserver in {self.path}")
        return self._address


def _first_nameserver(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as lines:
            for line in lines:
                fields = line.split()
                if len(fields) >= 2 and fields[0] == "nameserver":
                    return fields[1]
    except OSError:
        return None
    return None


async def probe(target: Target, ctx: ProbeContext) -> None:
    spec = target.spec
    assert isinstance(spec, DnsSpec)
    trace = ctx.trace
    nameserver = spec.nameserver or ctx.clients.dns.get()
    query = dns.message.make_query(spec.query, spec.record)
    if not spec.recursion:
        query.flags &= ~dns.flags.RD
    with trace.phase("query"):
        response = await _ask(query, nameserver, spec)
    answers = [rdata for rrset in response.answer if rrset.rdtype == spec.record for rdata in rrset]
    trace.dns_answers = len(answers)
    failures = _check(spec.expect, response.rcode(), answers, trace)
    if failures:
        raise failures[0]


async def _ask(query: dns.message.Message, nameserver: str, spec: DnsSpec) -> dns.message.Message:
    where = f"[{nameserver}]:{spec.port}" if ":" in nameserver else f"{nameserver}:{spec.port}"
    try:
        if spec.transport == "tcp":
            return await dns.asyncquery.tcp(query, nameserver, port=spec.port)
        response, _ = await dns.asyncquery.udp_with_fallback(query, nameserver, port=spec.port)
        return response
    except dns.exception.DNSException as exc:
        raise ProbeFailure(Reason.PROTOCOL, f"invalid answer from {where}: {exc}") from exc
    except EOFError as exc:
        raise ProbeFailure(Reason.RESET, f"{where} closed the connection") from exc
    except ConnectionRefusedError as exc:
        raise ProbeFailure(Reason.REFUSED, f"connection to {where} refused") from exc
    except ConnectionResetError as exc:
        raise ProbeFailure(Reason.RESET, f"{where} reset the connection") from exc
    except OSError as exc:
        raise ProbeFailure(Reason.CONNECT, f"cannot query {where}: {exc}") from exc


def _check(
    expect: DnsExpect, rcode: dns.rcode.Rcode, answers: list[dns.rdata.Rdata], trace: ProbeTrace
) -> list[ProbeFailure]:
    failures: list[ProbeFailure] = []
    accepted = ", ".join(r.name for r in expect.rcodes)
    if not trace.check("rcode", rcode in expect.rcodes, f"{rcode.name}, accepted {accepted}"):
        failures.append(ProbeFailure(Reason.DNS_RCODE, f"rcode {rcode.name}, expected {accepted}"))

    def answer_check(name: str, passed: bool, detail: str) -> None:
        if not trace.check(name, passed, detail):
            failures.append(ProbeFailure(Reason.DNS_ANSWER, f"{name}: {detail}"))

    count = len(answers)
    wanted = f"at least {expect.min_answers}"
    if expect.max_answers is not None:
        wanted += f" and at most {expect.max_answers}"
    answer_check(
        "answer count",
        expect.min_answers <= count and (expect.max_answers is None or count <= expect.max_answers),
        f"{count} answers, expected {wanted}",
    )
    texts = [rdata.to_text() for rdata in answers]
    shown = ", ".join(texts[:5]) + (f" (and {count - 5} more)" if count > 5 else "") or "none"
    for pattern in expect.any_answer_matches:
        answer_check(
            f"any answer matches {pattern.pattern!r}",
            any(pattern.search(t) for t in texts),
            f"answers: {shown}",
        )
    for pattern in expect.all_answers_match:
        misses = [t for t in texts if not pattern.search(t)]
        answer_check(
            f"all answers match {pattern.pattern!r}",
            not misses,
            f"not matching: {', '.join(misses[:5])}" if misses else f"answers: {shown}",
        )
    for pattern in expect.no_answer_matches:
        hits = [t for t in texts if pattern.search(t)]
        answer_check(
            f"no answer matches {pattern.pattern!r}",
            not hits,
            f"matching: {', '.join(hits[:5])}" if hits else f"answers: {shown}",
        )
    if expect.answers is not None:
        got = frozenset(answers)
        missing = sorted(r.to_text() for r in expect.answers - got)
        extra = sorted(r.to_text() for r in got - expect.answers)
        detail = "; ".join(
            part
            for part in (
                f"missing {', '.join(missing)}" if missing else "",
                f"unexpected {', '.join(extra)}" if extra else "",
            )
            if part
        )
        answer_check("answers", not missing and not extra, detail or f"answers: {shown}")
    return failures
