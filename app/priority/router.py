from __future__ import annotations

from fastapi import APIRouter, Response

from app.deps import CurrentUser, IfMatchRequired, Session, etag
from app.errors import problem_responses
from app.incidents.presenters import user_refs
from app.kit.pagination import Cursor, Limit
from app.priority import service
from app.priority.models import PriorityWeights
from app.priority.schemas import WeightsChangeOut, WeightsIn, WeightsOut
from app.priority.score import Weights
from app.schemas import Page

router = APIRouter(prefix="/api/v1/priority-weights", tags=["priority"])


async def _out(session: Session, row: PriorityWeights | None) -> WeightsOut:
    weights = service.weights_of(row)
    refs = await user_refs(session, [row.updated_by_id] if row else [])
    return WeightsOut(
        components=dict(weights.components),
        sectors=dict(weights.sectors),
        version=weights.version,
        updated_at=row.updated_at if row else None,
        updated_by=refs[row.updated_by_id] if row else None,
    )


@router.get("")
async def get_priority_weights(session: Session, _: CurrentUser, response: Response) -> WeightsOut:
    """The weights of the priority score's components and the sectors' criticality."""
    out = await _out(session, await service.weights_row(session))
    response.headers["ETag"] = etag(out.version)
    return out


@router.put(
    "",
    responses=problem_responses({412: "If-Match does not hold"}),
)
async def put_priority_weights(
    data: WeightsIn,
    session: Session,
    principal: CurrentUser,
    response: Response,
    if_match: IfMatchRequired,
) -> WeightsOut:
    """Replace the weights (admins of DOE or METI; If-Match: the ETag read, ``"0"`` for the
    defaults). Recorded; every open incident's priority is recomputed
    (by the worker, within seconds, when there are more than 500)."""
    row, _ = await service.set_weights(
        session,
        principal,
        Weights(
            {str(k): v for k, v in data.components.items()},
            {str(k): v for k, v in data.sectors.items()},
        ),
        if_match,
    )
    response.headers["ETag"] = etag(row.version)
    return await _out(session, row)


@router.get("/changes")
async def list_priority_weight_changes(
    session: Session, _: CurrentUser, limit: Limit = 50, cursor: Cursor = None
) -> Page[WeightsChangeOut]:
    """Every change to the weights, newest first."""
    rows, next_cursor = await service.weight_changes(session, limit=limit, cursor=cursor)
    refs = await user_refs(session, (r.changed_by_id for r in rows))
    return Page(
        items=[
            WeightsChangeOut(
                version=r.version,
                at=r.at,
                changed_by=refs[r.changed_by_id],
                before=r.before,
                after=r.after,
            )
            for r in rows
        ],
        next_cursor=next_cursor,
    )
