"""CSV import of profiles, all or nothing, through the API and the ``rrg`` command."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.db import Database
from app.register.models import DependencyProfile
from tests.conftest import MakeActor, assert_problem
from tests.register.helpers import HEADER, csv_file, csv_row, post_csv
from tests.test_cli import run

MINERALS = ["Nd", "Pr", "Dy", "Tb", "Sm", "Gd", "Lu", "Sc", "Y", "Ga", "Ge", "Sb", "W"]


async def _profile_rows(db: Database) -> int:
    async with db.unit_of_work(readonly=True) as session:
        return int(await session.scalar(select(func.count()).select_from(DependencyProfile)) or 0)


async def test_a_good_file_records_every_row_and_keeps_dated_history(
    client, db: Database, make_actor: MakeActor
):
    lead = await make_actor("lead", "DOE")
    text = csv_file(
        csv_row("Ga", days="30", as_of="2026-09-01"),
        csv_row("Ge", suppliers="", reliance="0", sectors=""),
        csv_row("Ga", days="25", as_of="2026-06-01"),  # older: recorded first
    )
    response = await post_csv(client, lead, text)
    assert response.status_code == 201, response.text
    report = response.json()
    assert report["imported"] == 3
    assert sorted((p["line"], p["mineral"], p["version"]) for p in report["profiles"]) == [
        (2, "Ga", 2),
        (3, "Ge", 1),
        (4, "Ga", 1),
    ]
    current = (await client.get("/api/v1/minerals/Ga/profiles/US", headers=lead.headers)).json()
    assert (current["version"], current["days_of_cover"], str(current["as_of"])) == (
        2,
        30,
        "2026-09-01",
    )
    assert current["sources"][0]["url"] == "https://example.org/survey"
    assert await _profile_rows(db) == 3


async def test_one_bad_row_among_a_thousand_writes_nothing_and_names_that_row(
    client, db: Database, make_actor: MakeActor
):
    lead = await make_actor("lead", "DOE")
    rows = [
        csv_row(MINERALS[i % len(MINERALS)], as_of=f"20{10 + i // 365:02d}-01-01", days=str(i))
        for i in range(1000)
    ]
    rows[736] = csv_row("Ga", suppliers="CN:80;AU:30")  # 110 %: line 738 (header is line 1)
    response = await post_csv(client, lead, csv_file(*rows))
    body = assert_problem(response, 422)
    assert [(e["line"], e["column"]) for e in body["errors"]] == [(738, "suppliers")]
    assert "100" in body["errors"][0]["reason"]
    assert await _profile_rows(db) == 0


async def test_every_problem_of_every_row_is_reported(client, db: Database, make_actor: MakeActor):
    lead = await make_actor("lead", "DOE")
    text = csv_file(
        csv_row("Ga"),
        csv_row("Ga", reliance="120", stockpile="-3"),
        csv_row("Unobtainium", country="XX"),
        csv_row("Ge", country="DE", suppliers="CN:50;QQ:10"),
        csv_row("Ge", consumption="", days="many", sectors="defense;space"),
        csv_row("Sb", suppliers="CN=50", illustrative="maybe"),
        "Ga,US,2026-01-01",
        csv_row("W", as_of="01/02/2026", source_url="not a url"),
    )
    body = assert_problem(await post_csv(client, lead, text), 422)
    found = sorted((e["line"], e["column"]) for e in body["errors"])
    assert found == [
        (3, "net_import_reliance_pct"),
        (3, "stockpile_tonnes"),
        (4, "country"),
        (4, "mineral"),
        (5, "country"),
        (5, "suppliers"),
        (6, "consumption_tonnes_per_year"),
        (6, "days_of_cover"),
        (6, "sectors"),
        (7, "illustrative"),
        (7, "suppliers"),
        (8, None),
        (9, "as_of"),
        (9, "source_url"),
    ]
    assert all(e["reason"] for e in body["errors"])
    assert await _profile_rows(db) == 0


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        (HEADER.replace(",days_of_cover", ""), ("days_of_cover", "missing column")),
        (HEADER + ",colour", ("colour", "unknown column")),
    ],
)
async def test_a_bad_header_is_reported_on_line_1(client, make_actor: MakeActor, header, problem):
    lead = await make_actor("lead", "DOE")
    body = assert_problem(await post_csv(client, lead, header + "\n" + csv_row() + "\n"), 422)
    assert [(e["line"], e["column"], e["reason"]) for e in body["errors"]] == [(1, *problem)]


async def test_rows_for_another_ministrys_country_are_403_and_nothing_is_written(
    client, db: Database, make_actor: MakeActor
):
    meti = await make_actor("lead", "METI")
    text = csv_file(csv_row("Ga", "JP"), csv_row("Ge", "US"))
    body = assert_problem(await post_csv(client, meti, text), 403)
    assert [(e["line"], e["column"]) for e in body["errors"]] == [(3, "country")]
    assert await _profile_rows(db) == 0


async def test_only_csv_bodies_are_accepted(client, make_actor: MakeActor):
    lead = await make_actor("lead", "DOE")
    response = await client.post(
        "/api/v1/imports/profiles", json={"rows": []}, headers=lead.headers
    )
    assert_problem(response, 415)
    latin1 = (csv_file(csv_row(note="café"))).encode("latin-1")
    not_utf8 = await client.post(
        "/api/v1/imports/profiles",
        content=latin1,
        headers={**lead.headers, "Content-Type": "text/csv"},
    )
    assert assert_problem(not_utf8, 422)["errors"][0]["line"] is None


async def test_an_idempotency_key_replays_the_import(client, db: Database, make_actor: MakeActor):
    lead = await make_actor("lead", "DOE")
    text = csv_file(csv_row())
    first = await post_csv(client, lead, text, **{"Idempotency-Key": "k1"})
    again = await post_csv(client, lead, text, **{"Idempotency-Key": "k1"})
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again.headers.get("idempotent-replayed") == "true"
    assert await _profile_rows(db) == 1


def test_rrg_import_profiles_from_the_command_line(tmp_path: Path):
    env = {"RRG_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}", "PYTHONPATH": os.getcwd()}
    assert run(["migrate"], env).returncode == 0
    created = run(
        [
            "users",
            "create",
            "--email",
            "lead@doe.example.gov",
            "--name",
            "Lead",
            "--ministry",
            "DOE",
            "--role",
            "lead",
        ],
        env,
    )
    assert created.returncode == 0, created.stderr
    good, bad = tmp_path / "good.csv", tmp_path / "bad.csv"
    good.write_text(csv_file(csv_row("Ga"), csv_row("Ge")))
    bad.write_text(csv_file(csv_row("Ga"), csv_row("Ge", reliance="101")))
    refused = run(["import", "profiles", str(bad), "--as", "lead@doe.example.gov"], env)
    assert refused.returncode == 1
    assert "line 3, column net_import_reliance_pct" in refused.stderr
    imported = run(["import", "profiles", str(good), "--as", "lead@doe.example.gov"], env)
    assert imported.returncode == 0, imported.stderr
    assert "imported 2 profiles" in imported.stdout
    stranger = run(["import", "profiles", str(good), "--as", "nobody@example.org"], env)
    assert stranger.returncode == 1
    assert "No active user" in stranger.stderr
