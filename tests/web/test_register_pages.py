"""The vulnerability ranking and the situation report pages (SPEC §9, §12)."""

from __future__ import annotations

import httpx

from app.db import Database
from tests.register.helpers import set_profile
from tests.web.conftest import SignedIn, report


async def test_the_ranking_shows_each_country_and_the_components(
    signed_in: SignedIn, db: Database, client: httpx.AsyncClient
):
    us = await signed_in("lead", "DOE")
    jp = await signed_in("lead", "METI")
    await set_profile(client, us.actor, "Ga", "US")
    await set_profile(client, jp.actor, "Ga", "JP")
    mine = await report(db, us.actor, title="Gallium visible", minerals=["Ga"], tlp="GREEN")
    red = await report(db, us.actor, title="Gallium red", minerals=["Ga"], tlp="RED")
    page = (await jp.get("/vulnerabilities")).text
    row = page[page.index('id="mineral-Ga"') :].split("</tr>")[0]
    assert "net import reliance" in row and "#1" in row
    assert mine.key in row and red.key not in row  # only what the reader may see
    assert "Not yet assessed" in page
    assert (await jp.get("/vulnerabilities?by=US")).status_code == 200
    assert (await jp.get("/vulnerabilities?by=XX")).status_code == 422


async def test_the_situation_report_is_in_the_readers_language_and_visibility(
    signed_in: SignedIn, db: Database
):
    reporter = await signed_in("lead", "DOE")
    reader = await signed_in("lead", "METI")
    await report(db, reporter.actor, title="Antimony smelter fire", severity="SEV1", tlp="GREEN")
    await report(db, reporter.actor, title="Secret source", severity="SEV1", tlp="RED")
    english = (await reader.get("/sitrep")).text
    assert "RRG situation report" in english and "Antimony smelter fire" in english
    assert "Secret source" not in english
    await reader.post("/preferences/language", {"language": "ja"})
    japanese = (await reader.get("/sitrep")).text
    assert '<html lang="ja">' in japanese and "RRG 状況報告" in japanese
    assert "<script" not in japanese.split("</head>")[1]
