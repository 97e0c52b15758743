"""Collectors render Lookout's state as Prometheus text on every scrape (and some also as
protobuf messages, ``expose_protobuf``, for native histograms).

Each reads memory only (``expose`` and ``expose_protobuf`` run on the event loop); removing a
target or a heartbeat from the config removes its series from the next scrape because nothing
is registered per series. ``catalog`` lists every family they write.
"""
