"""How many response body bytes HTTP probes may hold at once, by default: a constant of its own,
so that the config (``scheduler.body_bytes_in_flight``) names it without importing the clients
(aiohttp) that enforce it (``clients.BodyBudget``)."""

__all__ = ["BODY_BUDGET"]

BODY_BUDGET = 64 * 1024 * 1024
