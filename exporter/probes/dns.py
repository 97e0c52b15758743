"""The DNS kind: one query to one nameserver with dnspython's asyncio functions, then checks.

The query goes over UDP (falling back to TCP when the answer is truncated, as resolvers do) or
over TCP, to the configured nameserver or else the first one in /etc/resolv.conf. The query time
is the phase ``query``; the number of answer records of the queried type is
``lookout_dns_answers``. Checks: accepted rcodes, answer count, regexes on the answers' text
(any / all / none must match) and an exact expected set.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dns

from exporter.addresses import format_address
from exporter.config_source import ConfigProblem, KeyPath, Source, compile_regex, given
from exporter.families import Family
from exporter.lazy_import import lazy_module
from exporter.probes.context import ProbeContext
from exporter.probes.kind import Kind, always
from exporter.reasons import ProbeFailure, Reason
from exporter.results import ProbeTrace, Sample

_MODULES = (
    "dns.asyncquery",
    "dns.exception",
    "dns.flags",
    "dns.message",
    "dns.name",
    "dns.rcode",
    "dns.rdata",
    "dns.rdataclass",
    "dns.rdatatype",
)

if TYPE_CHECKING:
    import dns.asyncquery
    import dns.exception
    import dns.flags
    import dns.message
    import dns.name
    import dns.rcode
    import dns.rdata
    import dns.rdataclass
    import dns.rdatatype
else:
    # dnspython (about 3 MiB resident) is imported where a DNS target is built, unpickled or
    # probed, not by an exporter without DNS targets; the query machinery only by the prober.
    for _module in _MODULES:
        lazy_module(_module)

__all__ = ["KIND", "DnsExpect", "DnsObservation", "DnsSpec"]

ANSWERS = Family(
    "lookout_dns_answers", "gauge", "Number of answer records of the latest scheduled DNS probe."
)


@dataclass(frozen=True, slots=True)
class DnsExpect:
    rcodes: tuple[dns.rcode.Rcode, ...]
    min_answers: int = 1
    max_answers: int | None = None
    any_answer_matches: tuple[re.Pattern[str], ...] = ()
    all_answers_match: tuple[re.Pattern[str], ...] = ()
    no_answer_matches: tuple[re.Pattern[str], ...] = ()
    answers: frozenset[dns.rdata.Rdata] | None = None


@dataclass(frozen=True, slots=True)
class DnsSpec:
    query: dns.name.Name
    record: dns.rdatatype.RdataType
    expect: DnsExpect
    nameserver: str | None = None  # an IP address; None: the system's first nameserver
    port: int = 53
    transport: str = "udp"
    recursion: bool = True


@dataclass(frozen=True, slots=True)
class DnsObservation:
    """The answer: how many records of the queried type it held."""

    answers: int

    @property
    def status_code(self) -> None:
        return None

    def samples(self) -> Iterator[Sample]:
        yield ANSWERS, self.answers, ""

    def json(self) -> dict[str, Any]:
        return {"dns_answers": self.answers}

    def summary(self) -> list[str]:
        return [f"{self.answers} answers"]


def build(raw: Mapping[str, Any], at: KeyPath, source: Source) -> DnsSpec:
    try:
        query = dns.name.from_text(raw["query"])
    except dns.exception.DNSException as exc:
        raise ConfigProblem((*at, "query"), f"invalid name {raw['query']!r}: {exc}") from None
    record = dns.rdatatype.from_text(raw.get("record", "A"))
    settings = raw.get("dns", {})
    nameserver: str | None = None
    port = 53
    if "nameserver" in settings:
        nameserver, port = _nameserver(settings["nameserver"], (*at, "dns", "nameserver"))
    return DnsSpec(
        query=query,
        record=record,
        nameserver=nameserver,
        port=port,
        expect=_shared_expect(raw.get("expect", {}), (*at, "expect"), record, source),
        **given(settings, "transport", "recursion"),
    )


def _nameserver(text: str, at: KeyPath) -> tuple[str, int]:
    """``10.0.0.2``, ``10.0.0.2:5353``, ``2001:db8::53`` or ``[2001:db8::53]:5353``."""
    host, port = text, 53
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else -1
    elif text.count(":") == 1:
        host, _, rest = text.partition(":")
        port = int(rest) if rest.isdigit() else -1
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ConfigProblem(at, f"{text!r} is not an IP address (with an optional :port)") from None
    if not 0 < port < 65536:
        raise ConfigProblem(at, f"{text!r} has no valid port (1-65535)")
    return host, port


def _shared_expect(
    raw: Mapping[str, Any], at: KeyPath, record: dns.rdatatype.RdataType, source: Source
) -> DnsExpect:
    """The ``expect`` block for ``record``, built once per load for each way it is written."""
    key = ("dns expect", record, repr(raw))
    return source.shared(key, lambda: _build_expect(raw, at, record))


def _build_expect(
    raw: Mapping[str, Any], at: KeyPath, record: dns.rdatatype.RdataType
) -> DnsExpect:
    rcodes = tuple(dns.rcode.from_text(name) for name in raw.get("rcode", ["NOERROR"]))
    # A name that must exist is the common case; only then does no answer count as a failure.
    default_min = 1 if rcodes == (dns.rcode.Rcode.NOERROR,) else 0
    min_answers = raw.get("min_answers", default_min)
    max_answers = raw.get("max_answers")
    if max_answers is not None and max_answers < min_answers:
        raise ConfigProblem(
            (*at, "max_answers"),
            f"max_answers ({max_answers}) is below min_answers ({min_answers})",
        )
    answers = None
    if "answers" in raw:
        parsed = []
        for i, text in enumerate(raw["answers"]):
            try:
                parsed.append(
                    dns.rdata.from_text(
                        dns.rdataclass.IN, record, text, origin=dns.name.root, relativize=False
                    )
                )
            except (dns.exception.DNSException, ValueError) as exc:
                raise ConfigProblem(
                    (*at, "answers", i), f"{text!r} is not valid {record.name} data: {exc}"
                ) from None
        answers = frozenset(parsed)

    def regexes(key: str) -> tuple[re.Pattern[str], ...]:
        return tuple(compile_regex(p, (*at, key, i)) for i, p in enumerate(raw.get(key, [])))

    return DnsExpect(
        rcodes=rcodes,
        min_answers=min_answers,
        max_answers=max_answers,
        any_answer_matches=regexes("any_answer_matches"),
        all_answers_match=regexes("all_answers_match"),
        no_answer_matches=regexes("no_answer_matches"),
        answers=answers,
    )


def endpoint(spec: DnsSpec) -> str:
    question = f"{spec.query.to_text(omit_final_dot=True)} {spec.record.name}"
    server = format_address(spec.nameserver, spec.port) if spec.nameserver else "system resolver"
    return f"{question} @ {server} ({spec.transport})"


def options(spec: DnsSpec) -> dict[str, str]:
    return {"recursion desired": "yes" if spec.recursion else "no"}


async def probe(spec: DnsSpec, ctx: ProbeContext) -> None:
    trace = ctx.trace
    nameserver = spec.nameserver or ctx.clients.dns.get()
    query = dns.message.make_query(spec.query, spec.record)
    if not spec.recursion:
        query.flags &= ~dns.flags.RD
    with trace.phase("query"):
        response = await _ask(query, nameserver, spec)
    answers = [rdata for rrset in response.answer if rrset.rdtype == spec.record for rdata in rrset]
    trace.observation = DnsObservation(len(answers))
    failures = _check(spec.expect, response.rcode(), answers, trace)
    if failures:
        raise failures[0]


async def _ask(query: dns.message.Message, nameserver: str, spec: DnsSpec) -> dns.message.Message:
    where = format_address(nameserver, spec.port)
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


KIND = Kind(
    name="dns",
    imports=always(*_MODULES),
    build=build,
    probe=probe,
    endpoint=endpoint,
    options=options,
    families=(ANSWERS,),
)
