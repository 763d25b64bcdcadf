"""Held bulk inserts (``bulk.one_statement``) and rows built from new instances
(``row_of``, ``adopt``), on both databases."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app import clock
from app.auth.models import User
from app.db import Database, adopt, row_of, table_of
from app.kit import bulk
from app.ministries.models import Ministry
from app.models_base import new_id
from tests.conftest import QueryCounter


def _ministry(code: str) -> Ministry:
    return Ministry(
        id=new_id(),
        code=code,
        name=code,
        name_ja=code,
        country="US",
        timezone="UTC",
        kind="partner",
    )


def _user(ministry: Ministry, email: str) -> User:
    now = clock.now()
    return User(
        id=new_id(),
        email=email,
        display_name=email,
        ministry_id=ministry.id,
        role="viewer",
        timezone="UTC",
        created_at=now,
        updated_at=now,
    )


async def test_row_of_fills_python_defaults_on_the_instance_too() -> None:
    user = _user(_ministry("BULK0"), "defaults@bulk.example")
    row = row_of(user)
    assert set(row) == set(table_of(User).c.keys())
    assert (row["language"], row["co_chair"], row["active"], row["password_hash"]) == (
        "en",
        False,
        True,
        None,
    )
    assert (user.language, user.co_chair, user.active) == ("en", False, True)


async def test_held_inserts_travel_together_parents_with_children(
    db: Database, backend: str, count_queries: Callable[[], QueryCounter]
) -> None:
    ministry = _ministry("BULK1")
    user = _user(ministry, "held@bulk.example")
    async with db.unit_of_work() as session:
        counter = count_queries()
        async with bulk.one_statement(session):
            await bulk.insert_rows(session, table_of(Ministry), [row_of(ministry)])
            await bulk.insert_rows(session, table_of(User), [row_of(user)])
            # Held: a read inside the block does not see them yet.
            seen = await session.scalar(select(func.count()).where(Ministry.code == "BULK1"))
            assert seen == 0
        writes = [q for q in counter.queries if q.lstrip().upper().startswith(("INSERT", "WITH"))]
        assert len(writes) == (1 if backend == "postgresql" else 2), writes
        adopt(session, user)
        user.display_name = "Changed after adoption"  # persistent: an UPDATE, not an INSERT
    async with db.unit_of_work() as session:
        stored = await session.get(User, user.id)
        assert stored is not None and stored.display_name == "Changed after adoption"
        assert stored.ministry.code == "BULK1"


async def test_one_row_travels_as_plain_values_and_many_as_arrays(
    db: Database, backend: str, count_queries: Callable[[], QueryCounter]
) -> None:
    """On PostgreSQL a single row is an ``INSERT … VALUES`` of its values (the driver
    checks every array parameter and each element as it encodes them) and several rows one
    ``INSERT … SELECT … unnest`` of arrays; held together, each part keeps its own form.
    Either way the rows, NULLs and JSON included, arrive as written."""
    one, two, three = _ministry("BULK3"), _ministry("BULK4"), _ministry("BULK5")
    users = [_user(one, "one@bulk.example"), _user(two, "two@bulk.example")]
    users[0].password_hash = None  # a NULL among the values
    users[1].password_hash = "not a real hash"
    async with db.unit_of_work() as session:
        counter = count_queries()
        await bulk.insert_rows(session, table_of(Ministry), [row_of(one)])
        await bulk.insert_rows(session, table_of(Ministry), [row_of(two), row_of(three)])
        async with bulk.one_statement(session):
            await bulk.insert_rows(session, table_of(User), [row_of(users[0])])
            await bulk.insert_rows(session, table_of(User), [row_of(users[1])])
        if backend == "postgresql":
            single, many, held = counter.queries[-3:]
            assert "VALUES" in single and "unnest" not in single
            assert "unnest" in many
            assert held.count("VALUES") == 2 and "unnest" not in held
    async with db.unit_of_work() as session:
        stored = {u.email: u for u in (await session.scalars(select(User))).all()}
        assert stored["one@bulk.example"].password_hash is None
        assert stored["two@bulk.example"].password_hash == "not a real hash"
        assert stored["two@bulk.example"].ministry_id == two.id
        codes = set((await session.scalars(select(Ministry.code))).all())
        assert {"BULK3", "BULK4", "BULK5"} <= codes


async def test_an_exception_in_the_block_discards_the_held_rows(db: Database) -> None:
    ministry = _ministry("BULK2")

    async def hold_then_fail(session: AsyncSession) -> None:
        async with bulk.one_statement(session):
            await bulk.insert_rows(session, table_of(Ministry), [row_of(ministry)])
            raise RuntimeError("refused")

    async with db.unit_of_work() as session:  # commits: only the block failed
        with pytest.raises(RuntimeError):
            await hold_then_fail(session)
        assert bulk._HELD not in session.info
    async with db.unit_of_work() as session:
        assert await session.get(Ministry, ministry.id) is None


@pytest.mark.parametrize("codes", [[], ["METI"], ["DOE", "METI", "NONE"]])
async def test_among_bound_matches_the_list_given_at_execution(
    db: Database, codes: list[str]
) -> None:
    ministries = table_of(Ministry)
    async with db.unit_of_work(readonly=True) as session:
        statement = select(ministries.c.code).where(
            bulk.among_bound(ministries.c.code, "codes", postgresql=bulk.is_postgresql(session))
        )
        found = set((await session.scalars(statement, {"codes": codes})).all())
    assert found == {"DOE", "METI"} & set(codes)
