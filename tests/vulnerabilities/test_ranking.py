"""The vulnerability ranking against a brute-force computation, and TLP on its incidents."""

from __future__ import annotations

import itertools
import random
from datetime import date

import pytest

from app.auth.service import Principal
from app.db import Database
from app.incidents.vocabulary import SECTORS
from app.priority.score import COMPONENTS
from app.register import service as register
from app.register.schemas import ProfileIn
from app.register.service import NewProfile
from tests.conftest import MakeActor
from tests.incidents.helpers import create
from tests.register.helpers import set_profile

SUPPLIERS = ["CN", "RU", "AU", "CA", "CL", "VN", "KR", "DE", "IN", "BR"]
MINERALS = ["Nd", "Pr", "Dy", "Tb", "Sm", "Gd", "Lu", "Sc", "Y", "Ga", "Ge", "Sb", "W", "Li"]


def brute_force(profiles, concern, criticality):
    """The README's formula, written out independently."""
    out = {}
    for (mineral, country), p in profiles.items():
        share = min(100.0, sum(s for c, s in p["suppliers"] if c in concern[country]))
        crit = max((criticality[s] for s in p["sectors"]), default=0.0)
        out[(mineral, country)] = (
            100 * p["reliance"] / 100 * share / 100 * crit * 90 / (90 + p["days"])
        )
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_ranking_agrees_with_brute_force(
    client, db: Database, make_actor: MakeActor, seed: int
):
    rng = random.Random(seed)
    doe, meti = await make_actor("lead", "DOE"), await make_actor("lead", "METI")
    admin = await make_actor("admin", "DOE")
    concern = {
        "US": sorted(rng.sample(SUPPLIERS, 3)),
        "JP": sorted(rng.sample(SUPPLIERS, 2)),
    }
    criticality = {s: round(rng.random(), 2) for s in SECTORS}
    weights = {"components": {c: 1 for c in COMPONENTS}, "sectors": criticality}
    put = await client.put(
        "/api/v1/priority-weights", json=weights, headers={**admin.headers, "If-Match": "*"}
    )
    assert put.status_code == 200, put.text
    for ministry, country in (("DOE", "US"), ("METI", "JP")):
        lead = doe if ministry == "DOE" else meti
        response = await client.put(
            f"/api/v1/countries-of-concern/{ministry}",
            json={"countries": concern[country]},
            headers={**lead.headers, "If-Match": "*"},
        )
        assert response.status_code == 200
    profiles = {}
    for mineral in MINERALS:
        for country in ("US", "JP"):
            if rng.random() < 0.2:
                continue  # some minerals are profiled for one country only
            names = rng.sample(SUPPLIERS, rng.randint(0, 4))
            cuts = sorted(rng.uniform(0, 100) for _ in names)
            shares = [round(b - a, 2) for a, b in zip([0.0, *cuts], cuts, strict=False)]
            profiles[(mineral, country)] = {
                "reliance": round(rng.uniform(0, 100), 2),
                "suppliers": list(zip(names, shares, strict=True)),
                "sectors": rng.sample(SECTORS, rng.randint(0, 3)),
                "days": round(rng.uniform(0, 365), 1),
            }
    async with db.unit_of_work() as session:
        for ministry, lead in (("DOE", doe), ("METI", meti)):
            await register.import_profiles(
                session,
                Principal(user=lead.user),
                [
                    NewProfile(
                        mineral,
                        country,
                        ProfileIn(
                            as_of=date(2026, 1, 1),
                            net_import_reliance_pct=p["reliance"],
                            consumption_tonnes_per_year=1,
                            suppliers=[{"country": c, "share_pct": s} for c, s in p["suppliers"]],
                            domestic_capacity_tonnes_per_year=0,
                            allied_capacity_tonnes_per_year=0,
                            stockpile_tonnes=0,
                            days_of_cover=p["days"],
                            sectors=p["sectors"],
                        ),
                    )
                    for (mineral, country), p in profiles.items()
                    if register.ministry_of(country) == ministry
                ],
            )
    expected = brute_force(profiles, {k: set(v) for k, v in concern.items()}, criticality)
    viewer = await make_actor("viewer", "METI")

    ranking = (await client.get("/api/v1/vulnerabilities", headers=viewer.headers)).json()
    items = ranking["items"]
    profiled = sorted({m for m, _ in profiles})
    assert sorted(i["mineral"]["code"] for i in items) == profiled
    catalogue = (await client.get("/api/v1/minerals", headers=viewer.headers)).json()["items"]
    assert ranking["unassessed"] == sorted({m["code"] for m in catalogue} - set(profiled))
    joint = {m: max(v for (mm, _), v in expected.items() if mm == m) for m in profiled}
    for position, item in enumerate(items, start=1):
        code = item["mineral"]["code"]
        assert item["rank"] == position
        assert item["joint_exposure"] == pytest.approx(joint[code], abs=1e-4)
        for c in item["countries"]:
            assert c["exposure"] == pytest.approx(expected[(code, c["country"])], abs=1e-4)
            factors = [component["factor"] for component in c["components"]]
            product = 100 * factors[0] * factors[1] * factors[2] * factors[3]
            assert product == pytest.approx(c["exposure"], abs=1e-4)
    ordered = [joint[i["mineral"]["code"]] for i in items]
    assert all(a >= b - 1e-6 for a, b in itertools.pairwise(ordered))

    for country in ("US", "JP"):
        by = (
            await client.get(
                "/api/v1/vulnerabilities", params={"by": country}, headers=viewer.headers
            )
        ).json()["items"]
        mine = sorted((m for m, c in profiles if c == country))
        assert sorted(i["mineral"]["code"] for i in by) == mine
        values = [expected[(i["mineral"]["code"], country)] for i in by]
        assert all(a >= b - 1e-6 for a, b in itertools.pairwise(values))
        for position, item in enumerate(by, start=1):
            (entry,) = [c for c in item["countries"] if c["country"] == country]
            assert entry["rank"] == position


async def test_open_incidents_on_a_vulnerability_respect_tlp(client, make_actor: MakeActor):
    lead, reporter = await make_actor("lead", "DOE"), await make_actor("responder", "DOE")
    outsider = await make_actor("lead", "METI")
    await set_profile(client, lead, "Ga", "US")
    green = await create(client, reporter, title="Green gallium notice", tlp="GREEN")
    red = await create(client, reporter, title="Secret gallium outage", tlp="RED")

    async def ga_for(actor) -> dict:
        items = (await client.get("/api/v1/vulnerabilities", headers=actor.headers)).json()["items"]
        (ga,) = [i for i in items if i["mineral"]["code"] == "Ga"]
        return ga

    seen_by_outsider = await ga_for(outsider)
    assert [i["key"] for i in seen_by_outsider["open_incidents"]] == [green["key"]]
    assert seen_by_outsider["open_incident_count"] == 1
    assert "Secret" not in str(seen_by_outsider)
    seen_by_reporter = await ga_for(reporter)
    assert {i["key"] for i in seen_by_reporter["open_incidents"]} == {green["key"], red["key"]}
    assert seen_by_reporter["open_incident_count"] == 2
