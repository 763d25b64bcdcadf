"""The situation report: golden files in English and Japanese from a fixed dataset and
clock, the reader's TLP visibility (a RED incident), formats, and ``rrg sitrep``."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from app.db import Database
from app.escalation.sweep import sweep
from app.incidents.models import Incident
from app.priority.service import recompute_priority
from tests.conftest import MakeActor, assert_problem
from tests.escalation.helpers import (
    DAY,
    HOUR,
    T0,
    Clock,
    Team,
    approved_action,
    make_team,
    open_incident,
)
from tests.incidents.helpers import create, move
from tests.register.helpers import set_concern, set_profile
from tests.test_cli import run

GOLDEN = Path(__file__).parent / "golden"
SECRET = "Secret tungsten outage at the port"


@dataclass
class Dataset:
    team: Team
    secret_key: str


@pytest.fixture
async def dataset(client: httpx.AsyncClient, db: Database, make_actor: MakeActor) -> Dataset:
    """A fixed week: profiles, a GREEN incident moved to monitoring yesterday with two
    overdue actions, a new AMBER SEV1 report and a RED one, then a sweep at T0."""
    clock = Clock(T0 - 4 * DAY)
    team = await make_team(make_actor)
    await set_concern(client, team.doe_lead, "DOE", ["CN"])
    await set_concern(client, team.meti_lead, "METI", ["CN", "RU"])
    await set_profile(client, team.doe_lead, "Ga", "US", days_of_cover=40)
    await set_profile(
        client,
        team.meti_lead,
        "Ga",
        "JP",
        net_import_reliance_pct=60,
        suppliers=[{"country": "CN", "share_pct": 70}, {"country": "KR", "share_pct": 10}],
        days_of_cover=75,
        sectors=["semiconductors", "electronics"],
    )
    await set_profile(
        client,
        team.doe_lead,
        "Dy",
        "US",
        suppliers=[{"country": "CN", "share_pct": 85}, {"country": "MY", "share_pct": 8}],
        days_of_cover=21,
        sectors=["defense", "automotive"],
        illustrative=True,
    )
    await set_profile(
        client,
        team.doe_lead,
        "W",
        "US",
        net_import_reliance_pct=50,
        suppliers=[{"country": "CN", "share_pct": 30}, {"country": "BO", "share_pct": 10}],
        days_of_cover=60,
        sectors=["defense", "aerospace"],
    )

    clock.set(T0 - 3 * DAY)
    gallium = await open_incident(
        client,
        team,
        status="responding",
        severity="SEV2",
        effective_at=(T0 + 10 * DAY).isoformat(),
    )
    await approved_action(client, team, gallium, due_at=T0 - DAY)
    await approved_action(
        client,
        team,
        gallium,
        due_at=T0 - 20 * HOUR,
        owning_ministry="METI",
        title="日本の備蓄放出の評価 | phase 1",
    )
    clock.set(T0 - 20 * HOUR)
    moved = await move(client, team.doe_lead, gallium, "monitoring")
    assert moved.status_code == 200, moved.text

    clock.set(T0 - 5 * HOUR)
    secret = await create(
        client,
        team.reporter,
        title=SECRET,
        minerals=["W"],
        category="logistics_disruption",
        tlp="RED",
        severity="SEV1",
        affected_sectors=["defense"],
        days_of_cover={},
    )
    clock.set(T0 - 2 * HOUR)
    await create(
        client,
        team.reporter,
        title="Dysprosium magnet shipments held at customs",
        minerals=["Dy"],
        tlp="AMBER",
        severity="SEV1",
        supply_share_affected_pct=80,
        affected_sectors=["defense", "automotive"],
        days_of_cover={"JP": 90},
    )
    clock.set(T0)
    await sweep(db, T0)
    async with db.unit_of_work() as session:
        await recompute_priority(session, (await session.scalars(select(Incident.id))).all())
    return Dataset(team=team, secret_key=secret["key"])


async def _sitrep(client, actor, **params) -> httpx.Response:
    return await client.get(
        "/api/v1/sitrep", params={"at": T0.isoformat(), **params}, headers=actor.headers
    )


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("RRG_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), f"differs from {path}"


@pytest.mark.parametrize("lang", ["en", "ja"])
async def test_sitrep_matches_the_golden_file(client, dataset: Dataset, lang: str):
    response = await _sitrep(client, dataset.team.doe_lead, lang=lang, format="markdown")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/markdown")
    _golden(f"sitrep.{lang}.md", response.text)


async def test_the_same_facts_in_both_languages(client, dataset: Dataset):
    en = (await _sitrep(client, dataset.team.doe_lead, lang="en")).json()
    ja = (await _sitrep(client, dataset.team.doe_lead, lang="ja")).json()
    assert (en.pop("lang"), ja.pop("lang")) == ("en", "ja")
    assert en == ja
    assert [c["to_status"] for c in en["status_changes"]] == ["monitoring"]
    assert {g["ministry"]: g["count"] for g in en["overdue_actions"]} == {
        "DOE": 1,
        "METI": 1,
        "JOINT": 0,
    }
    assert en["escalations"], "the sweep at T0 escalated the overdue work"


async def test_a_sitrep_never_mentions_what_its_reader_may_not_see(client, dataset: Dataset):
    outsider, reporter = dataset.team.doe_lead, dataset.team.reporter
    for lang in ("en", "ja"):
        for fmt in ("json", "markdown"):
            text = (await _sitrep(client, outsider, lang=lang, format=fmt)).text
            assert SECRET not in text
            assert dataset.secret_key not in text
            assert "RED" not in text
    report = (await _sitrep(client, outsider)).json()
    assert report["tlp"] == "AMBER"  # the highest marking it mentions
    assert report["open_incident_count"] == 2
    assert {e["key"] for e in report["escalations"]} <= {"RRG-0001", "RRG-0003"}
    own = (await _sitrep(client, reporter)).json()
    assert own["tlp"] == "RED"
    assert own["open_incident_count"] == 3
    assert SECRET in [i["title"] for i in own["new_incidents"]]
    assert dataset.secret_key in {e["key"] for e in own["escalations"]}
    tungsten = [v for v in own["top_vulnerabilities"] if v["mineral"]["code"] == "W"]
    assert [i["key"] for i in tungsten[0]["open_incidents"]] == [dataset.secret_key]


async def test_format_by_accept_and_language_by_preference(client, dataset: Dataset):
    meti_viewer = dataset.team.meti_chair
    markdown = await client.get(
        "/api/v1/sitrep",
        params={"at": T0.isoformat()},
        headers={**meti_viewer.headers, "Accept": "text/markdown"},
    )
    assert markdown.headers["content-type"].startswith("text/markdown")
    assert markdown.text.startswith("# RRG situation report")  # make_actor users prefer en
    japanese = await client.get(
        "/api/v1/sitrep",
        params={"at": T0.isoformat(), "lang": "ja"},
        headers={**meti_viewer.headers, "Accept": "text/markdown"},
    )
    assert japanese.text.startswith("# RRG 状況報告")
    assert "日本時間" in japanese.text and "JST" in markdown.text


@pytest.mark.parametrize(
    "at", ["2030-01-07T09:00:00", "1899-12-31T23:00:00Z", "2100-01-01T00:00:00Z", "soon"]
)
async def test_report_time_must_carry_an_offset_and_lie_in_range(
    client, make_actor: MakeActor, at: str
):
    viewer = await make_actor("viewer", "DOE")
    response = await client.get("/api/v1/sitrep", params={"at": at}, headers=viewer.headers)
    assert [e["field"] for e in assert_problem(response, 422)["errors"]] == ["at"]


async def test_a_report_at_the_earliest_accepted_time_is_given(client, make_actor: MakeActor):
    viewer = await make_actor("viewer", "DOE")
    response = await client.get(
        "/api/v1/sitrep", params={"at": "1900-01-01T00:00:00Z"}, headers=viewer.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["at"].startswith("1900-01-01T00:00:00")


async def test_rrg_sitrep_defaults_to_the_co_lead_view(
    database_url: str, dataset: Dataset, backend: str
):
    env = {"RRG_DATABASE_URL": database_url, "PYTHONPATH": os.getcwd()}
    at = ["--at", T0.isoformat()]
    co_lead = run(["sitrep", "--lang", "ja", *at], env)
    assert co_lead.returncode == 0, co_lead.stderr
    assert co_lead.stdout.startswith("# RRG 状況報告")
    assert "共通ビュー" in co_lead.stdout
    assert SECRET not in co_lead.stdout and dataset.secret_key not in co_lead.stdout
    assert "RRG-0001" in co_lead.stdout
    named = run(["sitrep", "--as", dataset.team.reporter.user.email, "--format", "json", *at], env)
    assert named.returncode == 0, named.stderr
    assert SECRET in named.stdout
    nobody = run(["sitrep", "--as", f"{uuid.uuid4()}@example.org", *at], env)
    assert nobody.returncode == 1
