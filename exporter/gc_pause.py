"""The cyclic garbage collector kept from work that makes many objects and hardly any garbage.

Reading a config, unpickling its targets and making their stats make a million objects at
10,000 targets. Collections scan the objects of their generations, and a full collection all
of them: set off again and again by so many new objects, they find nothing to free and hold
the event loop for 10-30 ms each.

- ``paused_gc()``: no collection at all, for a load that runs alone (``check-config``, the
  loader process) or whose result is frozen right after it;
- ``young_collections_only()``: the young generations are still collected, so the garbage of
  the tasks running meanwhile goes, but no full collection happens until the end, when what
  was made is frozen (``runtime.settle_heap``);
- ``collect_young_less_often()``: for the running exporter. A probe makes hundreds of objects
  that live as long as it does and go with their last reference; collected every 700 new
  objects (Python's default), the youngest generation was scanned several times per probe,
  found the probes in flight alive, and moved them to the middle generation to be scanned
  again. That was 7 % of the interpreter's time while probing 10,000 targets.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["YOUNG_THRESHOLD", "collect_young_less_often", "paused_gc", "young_collections_only"]

# Collections of the middle generation before a full one: more than any reload makes.
_NEVER = 1 << 30
# New objects (allocations less deallocations) between collections of the youngest generation.
# Probing 10,000 targets, side by side: 700 (the default) 24.0 % of a core, 2,000 23.0,
# 10,000 22.5, 50,000 22.7 (benchmarks/README.md). A collection of 10,000 young objects takes
# well under a millisecond.
YOUNG_THRESHOLD = 10_000


@contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic collection within; nested uses keep it paused until the outermost ends."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


@contextmanager
def young_collections_only() -> Iterator[None]:
    """No full collection within (the oldest generation's threshold out of reach)."""
    young, middle, oldest = gc.get_threshold()
    gc.set_threshold(young, middle, _NEVER)
    try:
        yield
    finally:
        gc.set_threshold(young, middle, oldest)


def collect_young_less_often() -> None:
    """The youngest generation collected every ``YOUNG_THRESHOLD`` new objects; the older
    generations' thresholds stay."""
    _young, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, oldest)
