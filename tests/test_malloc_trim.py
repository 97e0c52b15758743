"""``malloc_trim.trim`` returns free pages in the middle of the C heap to the system."""

from __future__ import annotations

import psutil

from exporter import malloc_trim


def resident_mib() -> float:
    return float(psutil.Process().memory_info().rss) / 2**20


def test_free_pages_between_kept_allocations_go_back_to_the_system() -> None:
    # 4 KiB blocks come from malloc's heap (not from mmap, not from Python's small-object
    # allocator); keeping every tenth pins the heap's top, so free() alone returns nothing.
    blocks = [bytes(4096 - 33) for _ in range(25_000)]
    kept = blocks[::10]
    del blocks
    before = resident_mib()
    assert malloc_trim.trim()  # glibc, as on Debian and in the container image
    after = resident_mib()
    assert before - after > 40, (before, after)
    assert len(kept) == 2500
