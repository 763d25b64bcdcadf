"""Demo dependency profiles and countries of concern.

ILLUSTRATIVE FIGURES, NOT OFFICIAL STATISTICS: invented for the demonstration, in the
right order of magnitude only. Every profile is stored with ``illustrative = true`` and a
note saying so, and reports mark its figures as illustrative.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import User
from app.auth.service import Principal
from app.countries import ministry_of
from app.register import service as register
from app.register.schemas import ProfileIn
from app.register.service import NewProfile

NOTE = "Illustrative figures for the demo — not official statistics."
AS_OF = date(2026, 10, 1)
CONCERN = {"DOE": ["CN", "IR", "KP", "RU"], "METI": ["CN", "KP", "RU"]}

# mineral, country, net import reliance %, consumption t/yr, suppliers (country, share of
# imports %), domestic and allied capacity t/yr, stockpile t, days of cover, sectors.
Row = tuple[str, str, float, float, str, float, float, float, float, str]
PROFILES: list[Row] = [
    ("Ga", "US", 100, 20, "CN:54;JP:12;DE:10;CA:9", 0, 30, 5, 40, "semiconductors;defense;electronics"),  # noqa: E501
    ("Ge", "US", 50, 30, "CN:50;BE:25;DE:10", 10, 40, 8, 60, "defense;semiconductors;electronics"),
    ("graphite", "US", 100, 90_000, "CN:70;MX:9;CA:8;IN:4", 0, 40_000, 0, 55, "automotive;energy"),
    ("Dy", "US", 100, 200, "CN:85;MY:8;EE:3", 0, 40, 20, 21, "defense;automotive;energy"),
    ("Tb", "US", 100, 40, "CN:90;MY:5", 0, 8, 3, 21, "defense;electronics"),
    ("Sm", "US", 100, 100, "CN:80;JP:10", 0, 30, 10, 30, "defense;aerospace"),
    ("Sb", "US", 85, 23_000, "CN:63;BE:10;IN:9;MX:8", 3_000, 8_000, 1_000, 30, "defense;energy"),
    ("Co", "US", 76, 10_000, "NO:20;CA:16;JP:12;FI:10;CD:8", 500, 30_000, 300, 45, "aerospace;automotive;energy;defense"),  # noqa: E501
    ("Li", "US", 50, 3_000, "AR:51;CL:45", 2_000, 5_000, 0, 20, "energy;automotive"),
    ("W", "US", 50, 10_000, "CN:30;BO:10;DE:10;VN:10", 0, 4_000, 1_500, 60, "defense;aerospace;electronics"),  # noqa: E501
    ("Y", "US", 100, 1_000, "CN:93;KR:3", 0, 200, 100, 25, "defense;electronics;medical"),
    ("Ga", "JP", 60, 100, "CN:70;US:10;KR:10", 40, 30, 20, 75, "semiconductors;electronics"),
    ("Ge", "JP", 100, 20, "CN:55;BE:30", 0, 10, 5, 90, "semiconductors;electronics"),
    ("graphite", "JP", 100, 60_000, "CN:90;BR:3", 0, 10_000, 5_000, 62, "automotive;energy"),
    ("Dy", "JP", 100, 500, "CN:60;VN:20;AU:15", 0, 150, 100, 90, "automotive;energy;defense"),
    ("Tb", "JP", 100, 60, "CN:70;VN:20", 0, 10, 10, 90, "electronics;automotive"),
    ("Sb", "JP", 100, 4_000, "CN:50;VN:15;BO:10", 0, 1_000, 500, 120, "electronics;automotive"),
    ("Co", "JP", 90, 15_000, "PH:30;AU:20;CD:20;CA:10", 1_500, 8_000, 800, 60, "automotive;electronics;energy"),  # noqa: E501
    ("Li", "JP", 100, 40_000, "CL:70;AR:15;CN:10", 0, 30_000, 0, 30, "automotive;energy;electronics"),  # noqa: E501
    ("W", "JP", 90, 5_000, "CN:70;VN:10", 500, 2_000, 300, 80, "electronics;automotive;defense"),
    ("Y", "JP", 100, 800, "CN:90", 0, 100, 50, 60, "electronics;medical"),
]  # fmt: skip


def profile(row: Row) -> NewProfile:
    mineral, country, reliance, use, suppliers, home, allied, stock, days, sectors = row
    return NewProfile(
        mineral,
        country,
        ProfileIn.model_validate(
            {
                "as_of": AS_OF,
                "net_import_reliance_pct": reliance,
                "consumption_tonnes_per_year": use,
                "suppliers": [
                    {"country": c, "share_pct": float(s)}
                    for c, s in (pair.split(":") for pair in suppliers.split(";"))
                ],
                "domestic_capacity_tonnes_per_year": home,
                "allied_capacity_tonnes_per_year": allied,
                "stockpile_tonnes": stock,
                "days_of_cover": days,
                "sectors": sectors.split(";"),
                "illustrative": True,
                "note": NOTE,
            }
        ),
    )


async def load_register(session: AsyncSession, leads: dict[str, User]) -> int:
    """Each ministry's countries of concern and both countries' profiles, recorded by that
    ministry's lead (``leads``: ministry code -> user) through the register's services.
    Returns how many profiles were recorded."""
    for ministry, countries in CONCERN.items():
        await register.put_concern_list(
            session, Principal(user=leads[ministry]), ministry, countries, "*"
        )
    rows = [profile(r) for r in PROFILES]
    for ministry in CONCERN:
        mine = [p for p in rows if ministry_of(p.country) == ministry]
        await register.import_profiles(session, Principal(user=leads[ministry]), mine)
    return len(rows)
