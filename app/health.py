from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from app.deps import get_database
from app.errors import problem
from app.revisions import current_revision, is_behind

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up (no authentication, no database)."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "Not ready"}})
async def readyz(request: Request) -> JSONResponse:
    """The database answers and has every migration this code needs (a newer release's
    schema, during a rolling upgrade, is fine)."""
    db = get_database(request)
    head: str | None = request.app.state.migration_head
    try:
        async with db.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
            current = await conn.run_sync(current_revision)
    except Exception:
        return problem(503, detail="The database is unreachable")
    if is_behind(current, head):
        return problem(
            503, detail=f"Database at migration {current}, expected {head}: run `rrg migrate`"
        )
    return JSONResponse({"status": "ready", "migration": current})
