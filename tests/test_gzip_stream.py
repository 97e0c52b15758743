"""The scrape's gzip: ISA-L's where installed, zlib's otherwise, the same format either way."""

from __future__ import annotations

import gzip
import platform
import subprocess
import sys
import zlib
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exporter import gzip_stream

# Machines the isal wheels exist for, where pyproject.toml installs it.
ISAL_MACHINES = ("x86_64", "AMD64", "aarch64", "arm64")
BACKENDS: dict[str, Callable[[int, int, int], gzip_stream.Compressor]] = {
    "installed": gzip_stream._COMPRESSOBJ,
    "zlib": zlib.compressobj,
}


@pytest.mark.parametrize("backend", BACKENDS)
@given(pieces=st.lists(st.binary(max_size=5000), max_size=20))
def test_pieces_compressed_one_after_another_decompress_to_their_join(
    backend: str, pieces: list[bytes]
) -> None:
    compressobj = BACKENDS[backend]
    stream = compressobj(gzip_stream.LEVEL, zlib.DEFLATED, 31)
    body = b"".join(stream.compress(piece) for piece in pieces) + stream.flush()
    assert gzip.decompress(body) == b"".join(pieces)


def test_the_backend_is_the_one_pyproject_installs_on_this_machine() -> None:
    """The suite installs what pyproject.toml declares: isal on these machines, else none."""
    backend = type(gzip_stream.compressor()).__module__
    assert (backend != "zlib") == (platform.machine() in ISAL_MACHINES), backend
    text = b'lookout_probe_success{target="api"} 1\n' * 10_000
    assert gzip.decompress(gzip_stream.compress(text)) == text
    assert len(gzip_stream.compress(text)) < len(text) // 50


def test_zlib_compresses_where_isal_is_missing() -> None:
    code = (
        "import sys, gzip; sys.modules['isal'] = None\n"
        "from exporter import gzip_stream\n"
        "print(type(gzip_stream.compressor()).__module__)\n"
        "assert gzip.decompress(gzip_stream.compress(b'x' * 100000)) == b'x' * 100000\n"
    )
    found = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert found.stdout.strip() == "zlib"
