"""The committed ``exporter/protobuf/metrics_pb2.py`` and ``.pyi`` are exactly what protoc makes
of ``exporter/protobuf/metrics.proto`` today, and that file declares Prometheus' wire format."""

from __future__ import annotations

import sys
from pathlib import Path

from exporter.protobuf import metrics_pb2
from tests.processes import run

ROOT = Path(__file__).resolve().parent.parent
PROTO = "exporter/protobuf/metrics.proto"
GENERATED = ("exporter/protobuf/metrics_pb2.py", "exporter/protobuf/metrics_pb2.pyi")


def protoc(out: Path) -> list[str]:
    """The command that generates the module into ``out`` (the repository root to refresh it)."""
    return [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"--proto_path={ROOT}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        PROTO,
    ]


def test_the_generated_module_is_what_protoc_makes_of_the_proto_file(tmp_path: Path) -> None:
    result = run(protoc(tmp_path), cwd=ROOT)
    assert result.returncode == 0, result.stderr
    for name in GENERATED:
        fresh = (tmp_path / name).read_bytes()
        assert (ROOT / name).read_bytes() == fresh, (
            f"{name} is stale; regenerate it with: {' '.join(protoc(Path('.')))}"
        )


def test_the_messages_have_the_field_numbers_and_types_of_prometheus_client_model() -> None:
    """A spot check of the published wire format (io.prometheus.client, proto2)."""
    fields = {
        (message.name, field.name): (field.number, field.type)
        for message in metrics_pb2.DESCRIPTOR.message_types_by_name.values()
        for field in message.fields
    }
    descriptor = metrics_pb2.DESCRIPTOR
    assert descriptor.package == "io.prometheus.client"
    t = metrics_pb2.Histogram.DESCRIPTOR.fields_by_name["schema"]
    expected = {
        ("MetricFamily", "name"): (1, t.TYPE_STRING),
        ("MetricFamily", "type"): (3, t.TYPE_ENUM),
        ("MetricFamily", "metric"): (4, t.TYPE_MESSAGE),
        ("Metric", "label"): (1, t.TYPE_MESSAGE),
        ("Metric", "histogram"): (7, t.TYPE_MESSAGE),
        ("Histogram", "sample_count"): (1, t.TYPE_UINT64),
        ("Histogram", "bucket"): (3, t.TYPE_MESSAGE),
        ("Histogram", "schema"): (5, t.TYPE_SINT32),
        ("Histogram", "zero_threshold"): (6, t.TYPE_DOUBLE),
        ("Histogram", "zero_count"): (7, t.TYPE_UINT64),
        ("Histogram", "negative_span"): (9, t.TYPE_MESSAGE),
        ("Histogram", "positive_span"): (12, t.TYPE_MESSAGE),
        ("Histogram", "positive_delta"): (13, t.TYPE_SINT64),
        ("BucketSpan", "offset"): (1, t.TYPE_SINT32),
        ("BucketSpan", "length"): (2, t.TYPE_UINT32),
        ("Bucket", "cumulative_count"): (1, t.TYPE_UINT64),
        ("Bucket", "upper_bound"): (2, t.TYPE_DOUBLE),
    }
    assert {key: fields[key] for key in expected} == expected
    assert dict(metrics_pb2.MetricType.items()) == {
        "COUNTER": 0,
        "GAUGE": 1,
        "SUMMARY": 2,
        "UNTYPED": 3,
        "HISTOGRAM": 4,
        "GAUGE_HISTOGRAM": 5,
    }
