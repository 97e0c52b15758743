"""Collectors render Lookout's state as Prometheus text on every scrape.

Each reads memory only (``collect`` runs on the event loop); removing a target or a heartbeat
from the config removes its series from the next scrape because nothing is registered per series.
"""
