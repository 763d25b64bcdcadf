"""Countries: the ISO 3166-1 alpha-2 list (from pycountry) and names per language (Babel).

The co-lead countries and their ministries are fixed by the group's charter: dependency
profiles are kept for these two countries only, each by its own ministry.
"""

from __future__ import annotations

from functools import cache
from typing import Annotated, Literal

import pycountry
from babel import Locale
from pydantic import AfterValidator, WithJsonSchema

# Country of a co-lead ministry -> that ministry (SPEC §1: DOE for the US, METI for Japan).
CO_LEAD_COUNTRIES: dict[str, str] = {"US": "DOE", "JP": "METI"}
PROFILE_COUNTRIES: tuple[str, ...] = tuple(CO_LEAD_COUNTRIES)


@cache
def iso_alpha2() -> frozenset[str]:
    return frozenset(country.alpha_2 for country in pycountry.countries)


def is_country(code: str) -> bool:
    return code in iso_alpha2()


def _known(code: str) -> str:
    if not is_country(code):
        raise ValueError(f"{code!r} is not an ISO 3166-1 alpha-2 country code")
    return code


CountryCode = Annotated[
    str,
    AfterValidator(_known),
    WithJsonSchema(
        {"type": "string", "enum": sorted(iso_alpha2()), "description": "ISO 3166-1 alpha-2"}
    ),
]
"""A country, by its ISO 3166-1 alpha-2 code (the contract lists every code)."""
ProfileCountry = Literal["US", "JP"]


def ministry_of(country: str) -> str:
    """The co-lead ministry that keeps ``country``'s profiles (KeyError for others)."""
    return CO_LEAD_COUNTRIES[country]


def country_name(code: str, lang: str) -> str:
    """The country's short name in ``lang`` (``en`` | ``ja``); the code when unknown."""
    return str(Locale.parse(lang).territories.get(code, code))


def country_of_ministry(ministry: str) -> str:
    """The co-lead country a co-lead ministry keeps profiles for (KeyError for others)."""
    return {m: c for c, m in CO_LEAD_COUNTRIES.items()}[ministry]
