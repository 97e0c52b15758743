"""The icmp prober against the loopback interface: echo to 127.0.0.1 and ::1 through the kernel's
unprivileged datagram ICMP sockets, and packet loss made by the test itself with nftables drop
rules (all of 127.0.0.2, every other request to 127.0.0.3) that it adds and removes.

``tests/run`` sets ``net.ipv4.ping_group_range`` and installs nftables. Where the kernel still
refuses ICMP sockets, or nft cannot be run, the tests skip on a developer's machine and fail
with the reason under ``CI=true``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator

import pytest

from exporter.clock import SystemClock
from exporter.probes.clients import SharedClients
from exporter.probes.icmp import IcmpObservation, open_icmp_socket
from exporter.probes.runner import run_probe
from exporter.reasons import ProbeFailure, Reason
from exporter.results import ProbeResult
from tests.probes.conftest import Prober
from tests.tools import unavailable

TABLE = f"lookout_test_{os.getpid()}"


@pytest.fixture(scope="module", params=["127.0.0.1", "::1"])
def loopback(request: pytest.FixtureRequest) -> str:
    """A loopback address this kernel lets the tests ping without privileges."""
    address: str = request.param
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        open_icmp_socket(family).close()
    except ProbeFailure as failure:
        unavailable(f"no unprivileged ICMP socket for {address}: {failure.message}")
    return address


@pytest.fixture(scope="module")
def ipv4(request: pytest.FixtureRequest) -> None:
    try:
        open_icmp_socket(socket.AF_INET).close()
    except ProbeFailure as failure:
        unavailable(f"no unprivileged ICMP socket: {failure.message}")


def _nft(*args: str) -> subprocess.CompletedProcess[str]:
    command = ["nft", *args] if os.geteuid() == 0 else ["sudo", "-n", "nft", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)


@pytest.fixture(scope="module")
def dropping(ipv4: None) -> Iterator[None]:
    """Drop rules in a table of this test process: every echo reply from 127.0.0.2, and every
    other one from 127.0.0.3; removed after the module. Replies are dropped on input, as a
    lossy network would (a request dropped on output fails the send itself with EPERM)."""
    if shutil.which("nft") is None and shutil.which("nft", path="/usr/sbin:/sbin") is None:
        unavailable("nft is not installed (tests/run installs nftables)")
    chain = "{ type filter hook input priority 0; policy accept; }"
    for args in (
        ("add", "table", "ip", TABLE),
        ("add", "chain", "ip", TABLE, "in", chain),
        ("add", "rule", "ip", TABLE, "in", "ip", "saddr", "127.0.0.2", "icmp", "type",
         "echo-reply", "drop"),
        ("add", "rule", "ip", TABLE, "in", "ip", "saddr", "127.0.0.3", "icmp", "type",
         "echo-reply", "numgen", "inc", "mod", "2", "==", "0", "drop"),
    ):  # fmt: skip
        result = _nft(*args)
        if result.returncode != 0:
            _nft("delete", "table", "ip", TABLE)
            unavailable(f"cannot add an nftables drop rule: {result.stderr.strip()}")
    yield
    _nft("delete", "table", "ip", TABLE)


def icmp_target(host: str, **settings: object) -> dict[str, object]:
    expect = settings.pop("expect", None)
    target: dict[str, object] = {
        "kind": "icmp",
        "host": host,
        "icmp": {"interval": "10ms", "reply_timeout": "300ms", **settings},
    }
    if expect is not None:
        target["expect"] = expect
    return target


async def test_loopback_answers_every_echo_request(probe: Prober, loopback: str) -> None:
    result = await probe(icmp_target(loopback, count=4))
    assert result.success, result.message
    seen = result.observation
    assert isinstance(seen, IcmpObservation)
    assert (seen.address, seen.sent, len(seen.rtts), seen.loss) == (loopback, 4, 4, 0.0)
    stats = seen.stats()
    assert set(stats) == {"min", "avg", "max", "jitter"}
    assert 0 < stats["min"] <= stats["avg"] <= stats["max"] < 0.3
    assert result.duration == pytest.approx(stats["avg"])  # the histogram gets round trips
    assert [name for name, _ in result.phases] == ["echo"]
    text = probe.metrics(result)
    assert 'lookout_icmp_packet_loss_ratio{target="dependency",kind="icmp"} 0' in text
    for stat in ("min", "avg", "max", "jitter"):
        assert f'lookout_icmp_rtt_seconds{{target="dependency",kind="icmp",stat="{stat}"}}' in text
    assert 'lookout_probe_duration_seconds_count{target="dependency",kind="icmp"} 1' in text


async def test_localhost_is_resolved_first(probe: Prober, ipv4: None) -> None:
    result = await probe(icmp_target("localhost", ip_family="ip4"))
    assert result.success, result.message
    assert [name for name, _ in result.phases] == ["resolve", "echo"]


async def test_a_host_that_drops_everything_fails_as_packet_loss(
    probe: Prober, dropping: None
) -> None:
    result = await probe(icmp_target("127.0.0.2"))
    assert result.reason is Reason.PACKET_LOSS
    assert result.message == (
        "0 of 3 echo requests answered (100% loss), at least one reply expected"
    )
    text = probe.metrics(result)
    assert 'lookout_icmp_packet_loss_ratio{target="dependency",kind="icmp"} 1' in text
    assert "lookout_icmp_rtt_seconds" not in text
    assert 0.3 <= result.duration < 1.0  # no round trip: the wall time, to the reply timeout


@pytest.mark.parametrize(
    ("max_loss", "reason"),
    [
        pytest.param(None, None, id="default-one-reply-is-enough"),
        pytest.param(50, None, id="half-allowed"),
        pytest.param(25, Reason.PACKET_LOSS, id="quarter-allowed"),
    ],
)
async def test_partial_loss_against_max_loss(
    probe: Prober, dropping: None, max_loss: int | None, reason: Reason | None
) -> None:
    expect = {"expect": {"max_loss": max_loss}} if max_loss is not None else {}
    result = await probe(icmp_target("127.0.0.3", count=4, **expect))
    assert result.reason is reason, result.message
    seen = result.observation
    assert isinstance(seen, IcmpObservation)
    assert (seen.sent, len(seen.rtts), seen.loss) == (4, 2, 0.5)
    assert 'lookout_icmp_packet_loss_ratio{target="dependency",kind="icmp"} 0.5' in probe.metrics(
        result
    )


async def test_a_slow_average_round_trip_fails_as_slow(probe: Prober, ipv4: None) -> None:
    result = await probe(icmp_target("127.0.0.1", expect={"max_rtt": "0.001ms"}))
    assert result.reason is Reason.SLOW
    assert result.message.startswith("average round trip ")
    assert result.message.endswith(", limit 0.001ms")


async def test_a_probe_cut_by_its_timeout_leaks_no_socket(
    probe: Prober, ipv4: None, tasks_and_fds: Callable[[], tuple[int, int]]
) -> None:
    target = {**icmp_target("127.0.0.1", count=5, interval="1s"), "timeout": "150ms"}
    await probe(target)
    await asyncio.sleep(0.05)
    before = tasks_and_fds()
    results = await asyncio.gather(*(probe(target) for _ in range(10)))
    assert {r.reason for r in results} == {Reason.TIMEOUT}
    assert results[0].message == "no result within 150ms during echo"
    await asyncio.sleep(0.05)
    assert tasks_and_fds() == before


async def test_the_address_family_must_fit_the_address(probe: Prober) -> None:
    result = await probe(icmp_target("127.0.0.1", ip_family="ip6"))
    assert result.reason is Reason.CONNECT
    assert result.message == "127.0.0.1 is not an ip6 address"


def test_the_probe_runs_on_uvloop_the_exporters_event_loop(
    probe: Prober, loopback: str, dropping: None
) -> None:
    """``lookout-exporter run`` uses uvloop, which lacks some socket methods asyncio has."""
    uvloop = pytest.importorskip("uvloop")

    async def both() -> tuple[ProbeResult, ProbeResult]:
        clients = SharedClients()
        try:
            await probe(icmp_target(loopback))  # loads the target; this result is discarded
            assert probe.target is not None
            answered = await run_probe(probe.target, clients, SystemClock())
            await probe(icmp_target("127.0.0.3", count=4))
            assert probe.target is not None
            lossy = await run_probe(probe.target, clients, SystemClock())
            return answered, lossy
        finally:
            await clients.close()

    answered, lossy = uvloop.run(both())
    assert answered.success, answered.message
    assert isinstance(lossy.observation, IcmpObservation)
    assert lossy.observation.loss == 0.5
