"""Collectors render Lookout's state as Prometheus text on every scrape.

Each reads memory only (``expose`` runs on the event loop); removing a target or a heartbeat
from the config removes its series from the next scrape because nothing is registered per
series. ``catalog`` lists every family they write.
"""
