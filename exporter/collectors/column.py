"""A family's rendered parts, a part per target, kept joined in blocks a scrape writes as they are.

For the families whose samples come from a target's config alone (its objectives and its
endpoint): their parts change only when a reload changes a target, yet joining 10,000 of them
per family at every scrape took as long as joining any other family's (mostly waiting for
memory, a part at a time), and each part kept as an object of its own cost about 40 bytes
besides its text.

A ``Column`` keeps its rows in blocks of about ``BLOCK_BYTES``. A block is *joined* (its parts
as one ``bytes`` and the end of each part in it) or *loose* (a list of its parts, which ``put``
replaces in place). A ``put`` of the part a joined block already holds leaves it joined; any
other loosens it, and the next scrape (``blocks``) joins it again and keeps it so: a block is
loose only between a reload that changed one of its targets and the next scrape.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator, Sequence
from itertools import accumulate

__all__ = ["BLOCK_BYTES", "Column"]

# Bytes of text per block, as rows of the column's first part: large enough to go out as one
# piece of the response, small enough to join in a fraction of a millisecond.
BLOCK_BYTES = 256 * 1024


class Column:
    """``count`` parts (``b""`` for a row without samples), in blocks of ``rows`` rows.

    ``rows`` is 0 while no row has a part: such a column (the families of kinds no target
    has, for one) takes no memory per row. The first part put sets it, from its size."""

    __slots__ = ("_ends", "_joined", "_loose", "count", "rows")

    def __init__(self, count: int) -> None:
        """``count`` rows, none with a part."""
        self.count = count
        self.rows = 0
        self._joined: list[bytes] = []
        # Where each part of a joined block ends in it; None for a block without any part.
        self._ends: list[array[int] | None] = []
        self._loose: list[list[bytes] | None] = []

    @classmethod
    def of(cls, parts: Sequence[bytes]) -> Column:
        """A column of ``parts``, every block joined."""
        column = cls(len(parts))
        if parts.count(b"") == len(parts):  # in C, a few ns a part
            return column
        column._lay_out(len(next(filter(None, parts))))
        rows = column.rows
        for block, start in enumerate(range(0, len(parts), rows)):
            some = parts[start : start + rows]
            column._joined[block] = text = b"".join(some)
            column._ends[block] = array("I", accumulate(map(len, some))) if text else None
        return column

    def _lay_out(self, first: int) -> None:
        """Blocks for every row, each joined and empty, as rows of ``first`` bytes."""
        self.rows = rows = max(1, BLOCK_BYTES // first)
        blocks = -(-self.count // rows)
        self._joined = [b""] * blocks
        self._ends = [None] * blocks
        self._loose = [None] * blocks

    def put(self, row: int, part: bytes) -> None:
        """Row ``row``'s part from now on."""
        rows = self.rows
        if not rows:
            if not part:
                return
            self._lay_out(len(part))
            rows = self.rows
        block, at = divmod(row, rows)
        loose = self._loose[block]
        if loose is None:
            ends = self._ends[block]
            if ends is None:
                if not part:
                    return
            else:
                start = ends[at - 1] if at else 0
                end = ends[at]
                if end - start == len(part) and self._joined[block][start:end] == part:
                    return
            loose = self._loosen(block)
        loose[at] = part

    def _size(self, block: int) -> int:
        return min(self.rows, self.count - block * self.rows)

    def _split(self, block: int) -> list[bytes]:
        """The parts of joined ``block``."""
        ends = self._ends[block]
        if ends is None:
            return [b""] * self._size(block)
        joined = self._joined[block]
        starts = [0, *ends[:-1]]
        return list(map(joined.__getitem__, map(slice, starts, ends)))

    def _loosen(self, block: int) -> list[bytes]:
        loose = self._loose[block] = self._split(block)
        self._joined[block] = b""
        self._ends[block] = None
        return loose

    def parts(self, start: int, stop: int) -> list[bytes]:
        """The parts of rows ``start`` to ``stop`` (not included), in order."""
        stop = min(stop, self.count)
        rows = self.rows
        if not rows:
            return [b""] * max(0, stop - start)
        parts: list[bytes] = []
        first = start // rows
        for block in range(first, -(-stop // rows)):
            loose = self._loose[block]
            parts.extend(self._split(block) if loose is None else loose)
        offset = start - first * rows
        return parts[offset : offset + stop - start]

    def blocks(self) -> Iterator[bytes]:
        """The column's text, a block at a time (blocks without any part left out), each
        loose block joined and kept so. Each block is read when the iteration reaches it."""
        for block in range(len(self._loose)):
            loose = self._loose[block]
            if loose is None:
                text = self._joined[block]
            else:
                text = self._joined[block] = b"".join(loose)
                self._ends[block] = array("I", accumulate(map(len, loose))) if text else None
                self._loose[block] = None
            if text:
                yield text
