"""The ``heartbeats:`` config section: what it builds and how each mistake is reported."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from exporter.config import ConfigError, load_text
from exporter.config_source import Source
from exporter.heartbeats.schedule import Cron, Period


def load(text: str, tmp_path: Path, **env: str) -> object:
    return load_text(text, Source("lookout.yml", tmp_path), env)


def problems(text: str, tmp_path: Path, **env: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(text, tmp_path, **env)
    return [str(p) for p in caught.value.problems]


def test_the_design_example_builds(tmp_path: Path) -> None:
    config = load_text(
        """
heartbeats:
  - {name: nightly-billing, cron: "0 2 * * *", timezone: Europe/Berlin, grace: 30m,
     token: "${BILLING_TOKEN}", labels: {team: billing}}
  - {name: orders-consumer, period: 1m, grace: 2m, instances: 3, max_runtime: 10m}
""",
        Source("lookout.yml", tmp_path),
        {"BILLING_TOKEN": "s3cret"},
    )
    billing, consumer = config.heartbeats
    assert billing.schedule == Cron("0 2 * * *", ZoneInfo("Europe/Berlin"))
    assert billing.grace == 1800
    assert billing.token == "s3cret"
    assert billing.labels == (("team", "billing"),)
    assert consumer.schedule == Period(60)
    assert consumer.instances == 3
    assert consumer.max_runtime == 600
    assert consumer.token is None


def test_cron_defaults_to_utc(tmp_path: Path) -> None:
    config = load_text(
        "heartbeats: [{name: a, cron: '*/5 * * * *', grace: 1m}]", Source("x", tmp_path), {}
    )
    assert config.heartbeats[0].schedule == Cron("*/5 * * * *", ZoneInfo("UTC"))


def test_token_file_is_read_without_its_newline(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("from-file\n")
    config = load_text(
        "heartbeats: [{name: a, period: 1h, grace: 5m, token_file: token}]",
        Source("x", tmp_path),
        {},
    )
    assert config.heartbeats[0].token == "from-file"


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        pytest.param(
            "heartbeats:\n  - {name: a, grace: 1m}",
            "lookout.yml:2: heartbeats[0]: a heartbeat needs a schedule: set 'period' or 'cron'",
            id="no-schedule",
        ),
        pytest.param(
            "heartbeats:\n  - {name: a, period: 1m, cron: '* * * * *', grace: 1m}",
            "lookout.yml:2: heartbeats[0]: keys 'period' and 'cron' cannot be used together",
            id="period-and-cron",
        ),
        pytest.param(
            "heartbeats:\n  - name: a\n    cron: '0 2 * * *'\n    timezone: Mars/Olympus\n"
            "    grace: 1m",
            "lookout.yml:4: heartbeats[0].timezone: unknown time zone 'Mars/Olympus'",
            id="unknown-timezone",
        ),
        pytest.param(
            "heartbeats:\n  - name: a\n    cron: '0 26 * * *'\n    grace: 1m",
            "lookout.yml:3: heartbeats[0].cron: invalid cron expression '0 26 * * *': Bad hour",
            id="bad-cron",
        ),
        pytest.param(
            "heartbeats:\n  - {name: a, period: 0s, grace: 1m}",
            "lookout.yml:2: heartbeats[0].period: period must be greater than 0",
            id="zero-period",
        ),
        pytest.param(
            "heartbeats:\n  - {name: a, period: 1m}",
            "lookout.yml:2: heartbeats[0]: 'grace' is a required property",
            id="no-grace",
        ),
        pytest.param(
            "heartbeats:\n  - {name: a, period: 1m, grace: 1m}\n"
            "  - {name: a, period: 2m, grace: 1m}",
            "lookout.yml:3: heartbeats[1].name: duplicate heartbeat name 'a' (first at",
            id="duplicate-name",
        ),
        pytest.param(
            "heartbeats:\n  - {name: a, period: 1m, grace: 1m, labels: {status: x}}",
            "lookout.yml:2: heartbeats[0].labels.status: label 'status' is reserved",
            id="reserved-label",
        ),
        pytest.param(
            "heartbeats:\n  - {name: a, period: 1m, grace: 1m, token: ''}",
            "lookout.yml:2: heartbeats[0].token: the token is empty",
            id="empty-token",
        ),
        pytest.param(
            "heartbeats:\n  - {name: a, period: 1m, grace: 1m, token_file: missing}",
            "heartbeats[0].token_file: cannot read file",
            id="missing-token-file",
        ),
        pytest.param(
            "heartbeats:\n  - {name: a, period: 1m, grace: 1m, instances: 0}",
            "lookout.yml:2: heartbeats[0].instances: 0 is less than the minimum of 1",
            id="zero-instances",
        ),
        pytest.param(
            "heartbeats:\n  - {name: a, period: 1m, grace: 1m, every: 5m}",
            "lookout.yml:2: heartbeats[0].every: unknown key",
            id="unknown-key",
        ),
    ],
)
def test_mistakes_are_reported_with_file_line_and_key(
    yaml_text: str, expected: str, tmp_path: Path
) -> None:
    found = problems(yaml_text, tmp_path)
    assert len(found) == 1
    assert expected in found[0]


def test_a_token_from_an_unset_variable_is_an_error(tmp_path: Path) -> None:
    found = problems("heartbeats:\n  - {name: a, period: 1m, grace: 1m, token: '${T}'}", tmp_path)
    assert found == ["lookout.yml:2: heartbeats[0].token: environment variable T is not set"]
