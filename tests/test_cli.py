"""The ``lookout-exporter`` command end to end: the default config, SIGHUP reloads, logs."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path

from tests.exporter_process import ExporterProcess, exporter_command, run_exporter
from tests.metrics import sample_value


async def wait_for_sample(
    exporter: ExporterProcess, name: str, minimum: float, seconds: float = 10, **labels: str
) -> str:
    for _ in range(int(seconds / 0.1)):
        _status, text = await exporter.get("/metrics")
        value = sample_value(text, name, **labels)
        if value is not None and value >= minimum:
            return text
        await asyncio.sleep(0.1)
    raise AssertionError(f"{name}{labels} never reached {minimum}:\n{exporter.log_text()}")


async def test_without_a_config_it_probes_itself(tmp_path: Path) -> None:
    async with run_exporter([], tmp_path) as exporter:
        text = await wait_for_sample(exporter, "lookout_probe_success", 1, target="lookout-self")
        assert sample_value(text, "lookout_http_status_code", target="lookout-self") == 200
        assert "level=info logger=exporter msg=listening" in exporter.log_text()


async def test_sighup_reloads_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "lookout.yml"
    path.write_text("targets: []\n")
    async with run_exporter(["--config", str(path)], tmp_path) as exporter:
        health = f"{exporter.url}/-/healthy"
        path.write_text(
            "defaults: {interval: 200ms, timeout: 200ms}\n"
            f"targets: [{{name: self, kind: http, url: '{health}'}}]\n"
        )
        exporter.signal(signal.SIGHUP)
        await wait_for_sample(exporter, "lookout_probe_success", 1, target="self")
        assert 'msg="config reloaded" targets=1' in exporter.log_text()


async def test_a_failing_probe_logs_once_per_state_change(tmp_path: Path) -> None:
    path = tmp_path / "lookout.yml"
    path.write_text(
        # A timeout far above a refused connect's time, even on a loaded machine.
        "defaults: {interval: 300ms, timeout: 300ms}\n"
        "targets: [{name: down, kind: http, url: 'http://127.0.0.1:1/'}]\n"
    )
    async with run_exporter(["--config", str(path), "--log.format", "json"], tmp_path) as exporter:
        await wait_for_sample(exporter, "lookout_probe_duration_seconds_count", 4, target="down")
        events = [json.loads(line) for line in exporter.log_text().splitlines()]
    failing = [e for e in events if e["msg"] == "probe failing"]
    assert len(failing) == 1
    assert failing[0]["target"] == "down"
    assert failing[0]["reason"] == "refused"
    assert failing[0]["level"] == "warning"


async def test_an_invalid_config_at_startup_exits_1_with_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "lookout.yml"
    path.write_text("targets: [{name: a, kind: http, url: 'http://127.0.0.1/', interval: 5}]\n")
    code, _, err = await exporter_command("--config", str(path))
    assert code == 1
    assert f"{path}:1: targets[0].interval: 5 is not of type 'string'" in err


def test_version_prints_the_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "exporter", "version"], capture_output=True, text=True, check=True
    )
    assert done.stdout.startswith("lookout-exporter ")
