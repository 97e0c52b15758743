"""The dns prober against a loopback DNS server answering dnspython-built messages."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import dns.flags
import pytest

from exporter.config import ConfigError
from exporter.probes.clients import SystemNameserver
from exporter.probes.dns import DnsObservation
from exporter.reasons import ProbeFailure, Reason
from tests.probes.conftest import DnsServer, Prober
from tests.processes import free_port


def dns_target(server: DnsServer, query: str, **settings: Any) -> dict[str, Any]:
    expect = settings.pop("expect", None)
    target: dict[str, Any] = {
        "kind": "dns",
        "query": query,
        "dns": {"nameserver": server.address(), **settings},
    }
    if expect is not None:
        target["expect"] = expect
    return target


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_a_record_resolves_and_exports_answers_and_query_time(
    probe: Prober, dns_server: DnsServer, transport: str
) -> None:
    result = await probe(dns_target(dns_server, "ok.test", transport=transport))
    assert result.success, result.message
    assert result.observation == DnsObservation(2)
    assert [name for name, _ in result.phases] == ["query"]
    text = probe.metrics(result)
    assert 'lookout_dns_answers{target="dependency",kind="dns"} 2' in text
    assert 'lookout_probe_phase_seconds{target="dependency",kind="dns",phase="query"}' in text


async def test_recursion_flag_follows_the_config(probe: Prober, dns_server: DnsServer) -> None:
    await probe(dns_target(dns_server, "ok.test"))
    await probe(dns_target(dns_server, "ok.test", recursion=False))
    flags = [bool(q.flags & dns.flags.RD) for q in dns_server.queries]
    assert flags == [True, False]


async def test_truncated_udp_answer_falls_back_to_tcp(probe: Prober, dns_server: DnsServer) -> None:
    result = await probe(dns_target(dns_server, "big.test"))
    assert result.success, result.message
    assert result.observation == DnsObservation(100)


async def test_nxdomain_fails_as_dns_rcode(probe: Prober, dns_server: DnsServer) -> None:
    result = await probe(dns_target(dns_server, "nx.test"))
    assert result.reason is Reason.DNS_RCODE
    assert result.message == "rcode NXDOMAIN, expected NOERROR"
    assert result.observation == DnsObservation(0)


async def test_nxdomain_passes_when_accepted(probe: Prober, dns_server: DnsServer) -> None:
    result = await probe(dns_target(dns_server, "nx.test", expect={"rcode": ["NXDOMAIN"]}))
    assert result.success, result.message


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_servfail_fails_as_dns_rcode(
    probe: Prober, dns_server: DnsServer, transport: str
) -> None:
    result = await probe(dns_target(dns_server, "fail.test", transport=transport))
    assert result.reason is Reason.DNS_RCODE
    assert "SERVFAIL" in result.message


async def test_empty_answer_fails_the_default_answer_count(
    probe: Prober, dns_server: DnsServer
) -> None:
    result = await probe(dns_target(dns_server, "empty.test"))
    assert result.reason is Reason.DNS_ANSWER
    assert "0 answers, expected at least 1" in result.message


async def test_max_answers_bounds_the_count(probe: Prober, dns_server: DnsServer) -> None:
    result = await probe(dns_target(dns_server, "ok.test", expect={"max_answers": 1}))
    assert result.reason is Reason.DNS_ANSWER
    assert "2 answers, expected at least 1 and at most 1" in result.message


async def test_answers_follow_the_cname_to_the_queried_type(
    probe: Prober, dns_server: DnsServer
) -> None:
    result = await probe(dns_target(dns_server, "alias.test", expect={"answers": ["192.0.2.7"]}))
    assert result.success, result.message
    assert result.observation == DnsObservation(1)


@pytest.mark.parametrize(
    ("expect", "passed"),
    [
        pytest.param({"any_answer_matches": [r"^192\.0\.2\.11$"]}, True, id="any-hit"),
        pytest.param({"any_answer_matches": [r"^10\."]}, False, id="any-miss"),
        pytest.param({"all_answers_match": [r"^192\.0\.2\."]}, True, id="all-hit"),
        pytest.param({"all_answers_match": [r"\.10$"]}, False, id="all-miss"),
        pytest.param({"no_answer_matches": [r"^10\."]}, True, id="none-hit"),
        pytest.param({"no_answer_matches": [r"\.11$"]}, False, id="none-miss"),
        pytest.param({"answers": ["192.0.2.11", "192.0.2.10"]}, True, id="exact-set"),
        pytest.param({"answers": ["192.0.2.10"]}, False, id="exact-extra"),
        pytest.param({"answers": ["192.0.2.10", "192.0.2.11", "192.0.2.12"]}, False, id="missing"),
    ],
)
async def test_answer_checks(
    probe: Prober, dns_server: DnsServer, expect: dict[str, Any], passed: bool
) -> None:
    result = await probe(dns_target(dns_server, "ok.test", expect=expect))
    assert result.success is passed, result.message
    if not passed:
        assert result.reason is Reason.DNS_ANSWER


async def test_exact_set_reports_missing_and_unexpected(
    probe: Prober, dns_server: DnsServer
) -> None:
    result = await probe(dns_target(dns_server, "ok.test", expect={"answers": ["192.0.2.10"]}))
    assert result.message == "answers: unexpected 192.0.2.11"


async def test_txt_and_mx_answers_match_as_their_zone_text(
    probe: Prober, dns_server: DnsServer
) -> None:
    txt = dns_target(dns_server, "txt.test", expect={"any_answer_matches": ['^"v=spf1 ']})
    result = await probe({**txt, "record": "TXT"})
    assert result.success, result.message
    mx = dns_target(dns_server, "mx.test", expect={"answers": ["10 mx1.example"]})
    result = await probe({**mx, "record": "MX"})
    assert result.success, result.message


async def test_slow_answer_is_timed_and_passes(probe: Prober, dns_server: DnsServer) -> None:
    result = await probe(dns_target(dns_server, "slow.test"))
    assert result.success, result.message
    assert dict(result.phases)["query"] >= 0.25


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_silent_server_times_out_during_the_query(
    probe: Prober, dns_server: DnsServer, transport: str
) -> None:
    target = {**dns_target(dns_server, "silent.test", transport=transport), "timeout": "200ms"}
    result = await probe(target)
    assert result.reason is Reason.TIMEOUT
    assert result.message == "no result within 200ms during query"


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_garbage_answer_fails_as_protocol(
    probe: Prober, dns_server: DnsServer, transport: str
) -> None:
    result = await probe(dns_target(dns_server, "garbage.test", transport=transport))
    assert result.reason is Reason.PROTOCOL


async def test_tcp_server_hanging_up_without_an_answer_is_a_reset(
    probe: Prober, dns_server: DnsServer
) -> None:
    result = await probe(dns_target(dns_server, "hangup.test", transport="tcp"))
    assert result.reason is Reason.RESET
    assert result.message == f"{dns_server.address()} closed the connection"


async def test_closed_tcp_port_is_refused(probe: Prober) -> None:
    nameserver = f"127.0.0.1:{free_port()}"
    target = {
        "kind": "dns",
        "query": "ok.test",
        "dns": {"nameserver": nameserver, "transport": "tcp"},
    }
    result = await probe(target)
    assert result.reason is Reason.REFUSED


async def test_many_queries_to_a_silent_server_leak_nothing(
    probe: Prober, dns_server: DnsServer, tasks_and_fds: Any
) -> None:
    udp = {**dns_target(dns_server, "silent.test"), "timeout": "100ms"}
    tcp = {**dns_target(dns_server, "silent.test", transport="tcp"), "timeout": "100ms"}
    await probe(udp)
    await probe(tcp)
    await asyncio.sleep(0.05)
    before = tasks_and_fds()
    for _ in range(3):  # 3 rounds of 20 at once
        results = await asyncio.gather(*(probe(t) for t in [udp, tcp] * 10))
        assert {r.reason for r in results} == {Reason.TIMEOUT}
    await asyncio.sleep(0.05)
    assert tasks_and_fds() == before


def test_system_nameserver_is_the_first_of_resolv_conf(tmp_path: Path) -> None:
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("# comment\nsearch example\nnameserver 127.0.0.53\nnameserver ::1\n")
    assert SystemNameserver(str(resolv)).get() == "127.0.0.53"


def test_resolv_conf_without_nameserver_fails_as_dns(tmp_path: Path) -> None:
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("search example\n")
    with pytest.raises(ProbeFailure) as caught:
        SystemNameserver(str(resolv)).get()
    assert caught.value.reason is Reason.DNS


async def test_default_nameserver_comes_from_resolv_conf(probe: Prober, tmp_path: Path) -> None:
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\n")
    probe.clients.dns = SystemNameserver(str(resolv))
    result = await probe({"kind": "dns", "query": "ok.test", "dns": {"transport": "tcp"}})
    assert result.reason is Reason.REFUSED, result.message
    assert result.message == "connection to 127.0.0.1:53 refused"


@pytest.mark.parametrize(
    ("dns_section", "problem"),
    [
        pytest.param({"nameserver": "dns.example"}, "is not an IP address", id="name"),
        pytest.param({"nameserver": "127.0.0.1:99999"}, "no valid port", id="port"),
        pytest.param({"transport": "doh"}, "'doh' is not one of", id="transport"),
    ],
)
async def test_invalid_dns_settings_are_config_errors(
    probe: Prober, dns_section: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        await probe({"kind": "dns", "query": "ok.test", "dns": dns_section})
    assert problem in str(caught.value)


async def test_invalid_expected_answer_is_a_config_error(probe: Prober) -> None:
    with pytest.raises(ConfigError) as caught:
        await probe({"kind": "dns", "query": "ok.test", "expect": {"answers": ["not-an-ip"]}})
    assert "targets[0].expect.answers[0]: 'not-an-ip' is not valid A data" in str(caught.value)
