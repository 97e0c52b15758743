"""A family's column reads as the list of parts it was given, however its blocks are kept."""

from __future__ import annotations

from itertools import islice

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.collectors import column as column_module
from exporter.collectors.column import Column

PARTS = st.sampled_from([b"", b"", b"a\n", b"z\n", b"bb\n", b"ccc\n", b"a much longer part\n"])
ROWS = 12
# Either a put (row, part) or a scrape (None).
STEPS = st.lists(st.one_of(st.tuples(st.integers(0, ROWS - 1), PARTS), st.none()), max_size=60)


def check(column: Column, model: list[bytes]) -> None:
    blocks = list(column.blocks())
    assert b"" not in blocks
    assert b"".join(blocks) == b"".join(model)
    assert column.parts(0, ROWS) == model
    assert column.parts(3, 8) == model[3:8]


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=300)
@given(start=st.lists(PARTS, min_size=ROWS, max_size=ROWS), steps=STEPS)
def test_a_column_reads_as_its_parts_after_any_puts_and_scrapes(
    monkeypatch: pytest.MonkeyPatch, start: list[bytes], steps: list[tuple[int, bytes] | None]
) -> None:
    monkeypatch.setattr(column_module, "BLOCK_BYTES", 8)  # blocks of 2 to 8 rows
    for column, model in ((Column.of(start), list(start)), (Column(ROWS), [b""] * ROWS)):
        for step in steps:
            if step is None:
                check(column, model)
            else:
                row, part = step
                column.put(row, part)
                model[row] = part
        check(column, model)
        check(column, model)  # every block joined by now


def test_a_block_is_written_as_it_is_until_a_part_changes_and_joined_again_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(column_module, "BLOCK_BYTES", 6)  # two rows of three bytes a block
    column = Column.of([b"a1\n", b"b1\n", b"c1\n", b"d1\n"])
    first = list(column.blocks())
    assert first == [b"a1\nb1\n", b"c1\nd1\n"]
    assert all(a is b for a, b in zip(first, column.blocks(), strict=True))
    column.put(1, b"b1\n")  # the same part: the block stays joined
    column.put(2, b"c2\n")
    assert column.parts(0, 4) == [b"a1\n", b"b1\n", b"c2\n", b"d1\n"]
    changed = list(column.blocks())
    assert changed[0] is first[0]
    assert changed[1] == b"c2\nd1\n"
    assert changed[1] is next(islice(column.blocks(), 1, None))  # joined again, and kept
    assert column.parts(0, 4) == [b"a1\n", b"b1\n", b"c2\n", b"d1\n"]


def test_a_column_without_parts_keeps_no_blocks() -> None:
    column = Column(10_000)
    column.put(5, b"")
    assert column.rows == 0
    assert list(column.blocks()) == []
    assert column.parts(9_998, 20_000) == [b"", b""]
    column.put(5, b"x\n")
    assert column.rows == column_module.BLOCK_BYTES // 2
    assert list(column.blocks()) == [b"x\n"]
