"""The garbage collector's pauses around loads and reloads (``exporter.gc_pause``)."""

from __future__ import annotations

import gc
import json
import subprocess
import sys

from exporter.gc_pause import YOUNG_THRESHOLD, paused_gc

# Run in a fresh interpreter, whose heap does not depend on the tests before: (young, full)
# collections while two million lists are made and kept, as it is and with only young ones.
COUNT_COLLECTIONS = """
import gc, json
from exporter.gc_pause import young_collections_only

def making(count):
    before = gc.get_stats()
    kept = [[] for _ in range(count)]
    after = gc.get_stats()
    return [after[g]["collections"] - before[g]["collections"] for g in (0, 2)]

threshold = gc.get_threshold()
as_it_is = making(2_000_000)
with young_collections_only():
    young_only = making(2_000_000)
print(json.dumps([as_it_is, young_only, gc.get_threshold() == threshold]))
"""


def test_many_new_objects_set_off_full_collections_unless_only_young_ones_are_allowed() -> None:
    done = subprocess.run(
        [sys.executable, "-c", COUNT_COLLECTIONS], capture_output=True, text=True, check=True
    )
    (young, full), (young_only, full_only), restored = json.loads(done.stdout)
    assert young > 0, "the control: the collector runs as it is"
    assert full > 0, "the control: the collector runs as it is"
    assert young_only > 0, "young generations are still collected"
    assert full_only == 0
    assert restored


def test_a_pause_holds_until_the_outermost_one_ends() -> None:
    with paused_gc():
        with paused_gc():
            assert not gc.isenabled()
        assert not gc.isenabled()
        before = gc.get_stats()[0]["collections"]
        kept: list[list[int]] = [[] for _ in range(100_000)]
        assert gc.get_stats()[0]["collections"] == before
        assert len(kept) == 100_000
    assert gc.isenabled()


COUNT_YOUNG_COLLECTIONS = """
import gc, json
from exporter.gc_pause import YOUNG_THRESHOLD, collect_young_less_often

def collections(count):
    # Every tenth collection of the youngest generation is one of the middle (counted there).
    before = sum(generation["collections"] for generation in gc.get_stats())
    kept = [[] for _ in range(count)]
    return sum(generation["collections"] for generation in gc.get_stats()) - before

default = collections(200_000)
older = gc.get_threshold()[1:]
collect_young_less_often()
print(json.dumps([default, collections(200_000), gc.get_threshold()[1:] == older]))
"""


def test_the_running_exporter_collects_the_youngest_generation_less_often() -> None:
    done = subprocess.run(
        [sys.executable, "-c", COUNT_YOUNG_COLLECTIONS], capture_output=True, text=True, check=True
    )
    default, tuned, older_kept = json.loads(done.stdout)
    assert default >= 200_000 // 700 - 1, "the control: Python's default threshold"
    assert 0 < tuned <= 200_000 // YOUNG_THRESHOLD + 1
    assert older_kept, "the middle and oldest generations keep their thresholds"
