"""The incident vocabularies (SPEC §2), defined once: the API's types and the database's
check constraints both come from here."""

from __future__ import annotations

from typing import Literal, get_args

Tlp = Literal["CLEAR", "GREEN", "AMBER", "AMBER+STRICT", "RED"]
Severity = Literal["SEV1", "SEV2", "SEV3", "SEV4"]
Status = Literal[
    "watch", "reported", "triaged", "responding", "monitoring", "resolved", "closed", "rejected"
]
Category = Literal[
    "export_control",
    "production_outage",
    "logistics_disruption",
    "price_spike",
    "demand_surge",
    "sanctions",
    "natural_disaster",
    "quality_failure",
    "other",
]
Sector = Literal[
    "defense",
    "energy",
    "semiconductors",
    "automotive",
    "electronics",
    "aerospace",
    "medical",
    "other",
]

TLP_MARKINGS: tuple[str, ...] = get_args(Tlp)
SEVERITIES: tuple[str, ...] = get_args(Severity)
STATUSES: tuple[str, ...] = get_args(Status)
CATEGORIES: tuple[str, ...] = get_args(Category)
SECTORS: tuple[str, ...] = get_args(Sector)
