"""The cyclic garbage collector kept from work that makes many objects and hardly any garbage.

Reading a config, unpickling its targets and making their stats make a million objects at
10,000 targets. Collections scan the objects of their generations, and a full collection all
of them: set off again and again by so many new objects, they find nothing to free and hold
the event loop for 10-30 ms each.

- ``paused_gc()``: no collection at all, for a load that runs alone (``check-config``, the
  loader process) or whose result is frozen right after it;
- ``young_collections_only()``: the young generations are still collected, so the garbage of
  the tasks running meanwhile goes, but no full collection happens until the end, when what
  was made is frozen (``runtime.settle_heap``).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["paused_gc", "young_collections_only"]

# Collections of the middle generation before a full one: more than any reload makes.
_NEVER = 1 << 30


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
