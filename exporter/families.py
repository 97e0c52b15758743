"""The declaration of a metric family: its name, its type and its help text.

Every family Lookout exports is declared once, as a ``Family`` constant in the module that
records its samples (a probe kind declares its own, as ``lookout_dns_answers`` in
``probes/dns.py``). ``exposition`` writes them; tests, docs checks and the dashboards read the
names from these constants instead of copying them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Family", "FamilyType"]

FamilyType = Literal["gauge", "counter", "histogram"]


@dataclass(frozen=True, slots=True, eq=False)
class Family:
    """Compared and hashed by identity: each family is declared exactly once."""

    name: str
    type: FamilyType
    help: str
