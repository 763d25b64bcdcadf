"""The floor for P1: a minimal FastAPI app doing the least a create can do.

It validates the same incident body as ``POST /api/v1/incidents`` (the service's own
``IncidentCreate`` model) and inserts one row with SQLAlchemy Core through the service's own
``Database`` (so SQLite runs with the same pragmas and ``BEGIN IMMEDIATE``). No
authentication, no visibility, no timeline: what is left is the framework, validation and
one insert. ``GET /api/v1/me`` is the bare JSON endpoint (a constant body) that rrg's
``GET /api/v1/me`` is compared with. Served by ``python -m uvicorn bench.floor_app:app``
against ``RRG_DATABASE_URL``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from sqlalchemy import JSON, Column, DateTime, MetaData, String, Table, Text, Uuid, insert

from app import clock
from app.db import Database
from app.incidents.schemas import IncidentCreate

metadata = MetaData()
floor_incidents = Table(
    "floor_incidents",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("title", String(300), nullable=False),
    Column("summary", Text, nullable=False),
    Column("category", String(32), nullable=False),
    Column("tlp", String(16), nullable=False),
    Column("severity", String(8)),
    Column("body", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

database = Database(os.environ["RRG_DATABASE_URL"])


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    async with database.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    yield
    await database.dispose()


app = FastAPI(lifespan=lifespan)


@app.get("/readyz")
async def readyz() -> dict[str, str]:
    return {"status": "ready"}


@app.get("/api/v1/me")
async def bare() -> dict[str, Any]:
    """The bare JSON endpoint ``GET /api/v1/me`` is compared with: no database, no auth."""
    return {"id": "0", "email": "bare@example.org", "role": "responder", "ministry": "DOE"}


@app.post("/api/v1/incidents", status_code=201)
async def create(data: IncidentCreate) -> dict[str, Any]:
    row_id = uuid.uuid4()
    async with database.unit_of_work() as session:
        await session.execute(
            insert(floor_incidents).values(
                id=row_id,
                title=data.title,
                summary=data.summary,
                category=data.category,
                tlp=data.tlp,
                severity=data.severity,
                body=data.model_dump(mode="json"),
                created_at=clock.now(),
            )
        )
    return {"id": str(row_id), "title": data.title}
