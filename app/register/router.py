from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from app.countries import CO_LEAD_COUNTRIES, ProfileCountry
from app.deps import CurrentUser, IfMatch, IfMatchRequired, IfNoneMatch, Session, etag
from app.errors import AppError, NotFound, problem_responses
from app.idempotency import Idempotent
from app.kit.pagination import Cursor, Limit
from app.minerals.schemas import MineralOut
from app.register import imports, service
from app.register.presenters import (
    present_concern_changes,
    present_concern_lists,
    present_profiles,
)
from app.register.queries import concern_lists
from app.register.schemas import (
    ConcernListChangeOut,
    ConcernListIn,
    ConcernListOut,
    CountryProfiles,
    ImportedProfile,
    ImportReport,
    MineralProfilesOut,
    ProfileIn,
    ProfileOut,
)
from app.schemas import Page

router = APIRouter(prefix="/api/v1", tags=["register"])

PUT_RESPONSES: dict[int | str, dict[str, Any]] = {
    201: {"description": "The first version was created", "model": ProfileOut},
}
CSV_MEDIA_TYPE = "text/csv"


class UnsupportedMediaType(AppError):
    status, slug, title = 415, "unsupported-media-type", "Unsupported media type"


@router.get("/minerals/{code}/profiles")
async def list_mineral_profiles(code: str, session: Session, _: CurrentUser) -> MineralProfilesOut:
    """The current dependency profile of the mineral for each co-lead country (null while
    there is none) and how many versions are kept (``.../{country}/versions``)."""
    mineral = await service.get_mineral(session, code)
    current = await service.current_profiles_of(session, mineral.code)
    presented = {p.country: p for p in await present_profiles(session, current)}
    counts = await service.version_counts(session, mineral.code)
    return MineralProfilesOut(
        mineral=MineralOut.model_validate(mineral),
        countries=[
            CountryProfiles(
                country=country,
                ministry=ministry,
                current=presented.get(country),
                versions=counts.get(country, 0),
            )
            for country, ministry in CO_LEAD_COUNTRIES.items()
        ],
    )


@router.get("/minerals/{code}/profiles/{country}")
async def get_mineral_profile(
    code: str, country: ProfileCountry, session: Session, _: CurrentUser, response: Response
) -> ProfileOut:
    """The current profile, with its ETag (send it as If-Match to change it)."""
    mineral = await service.get_mineral(session, code)
    row = await service.current_profile(session, mineral.code, country)
    if row is None:
        raise NotFound(f"No {country} profile for {mineral.code} yet")
    response.headers["ETag"] = etag(row.version)
    return (await present_profiles(session, [row]))[0]


@router.get("/minerals/{code}/profiles/{country}/versions")
async def list_mineral_profile_versions(
    code: str,
    country: ProfileCountry,
    session: Session,
    _: CurrentUser,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[ProfileOut]:
    """Every version kept, newest first."""
    mineral = await service.get_mineral(session, code)
    rows, next_cursor = await service.versions(
        session, mineral.code, country, limit=limit, cursor=cursor
    )
    return Page(items=await present_profiles(session, rows), next_cursor=next_cursor)


@router.put("/minerals/{code}/profiles/{country}", responses=PUT_RESPONSES)
async def put_mineral_profile(
    code: str,
    country: ProfileCountry,
    data: ProfileIn,
    session: Session,
    principal: CurrentUser,
    response: Response,
    if_match: IfMatch = None,
    if_none_match: IfNoneMatch = None,
) -> ProfileOut:
    """Record a new version of the profile (leads of the country's ministry: US → DOE,
    JP → METI). ``If-Match`` with the current ETag, or ``If-None-Match: *`` for the first
    version. The priority of the open incidents on the mineral is recomputed."""
    row = await service.put_profile(
        session,
        principal,
        code,
        country,
        data,
        if_match=if_match,
        if_none_match=if_none_match,
    )
    response.headers["ETag"] = etag(row.version)
    if row.version == 1:
        response.status_code = 201
    return (await present_profiles(session, [row]))[0]


@router.post(
    "/imports/profiles",
    status_code=201,
    responses=problem_responses(
        {
            409: "Changed concurrently, or the Idempotency-Key is in flight",
            415: "The body is not text/csv",
            422: "Problems in the file: `errors` lists line, column and reason",
        }
    ),
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": imports.__doc__,
            "content": {CSV_MEDIA_TYPE: {"schema": {"type": "string"}}},
        }
    },
)
async def import_profiles(
    request: Request,
    session: Session,
    principal: CurrentUser,
    response: Response,
    idempotency: Idempotent,
) -> ImportReport:
    """Import profile versions from CSV, all or nothing: any bad row → 422 listing every
    problem (line, column, reason), and nothing is written."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != CSV_MEDIA_TYPE:
        raise UnsupportedMediaType("Send the profiles as text/csv")
    body = await request.body()

    async def produce() -> ImportReport:
        written, recomputed = await imports.import_csv(session, principal, imports.decode(body))
        return ImportReport(
            imported=len(written),
            profiles=[
                ImportedProfile(
                    line=line, mineral=row.mineral_code, country=row.country, version=row.version
                )
                for line, row in written
            ],
            recomputed_incidents=recomputed,
        )

    async def nothing_to_hide(_: object) -> None:
        """An import report names only public reference data."""

    return await idempotency.respond(  # type: ignore[return-value]
        session, response, scope="import_profiles", produce=produce, recheck=nothing_to_hide
    )


@router.get("/countries-of-concern")
async def list_countries_of_concern(session: Session, _: CurrentUser) -> Page[ConcernListOut]:
    """Each co-lead ministry's countries of concern (applied to its country's profiles)."""
    rows = await concern_lists(session)
    return Page(items=await present_concern_lists(session, rows), next_cursor=None)


@router.get("/countries-of-concern/{ministry}")
async def get_countries_of_concern(
    ministry: str, session: Session, _: CurrentUser, response: Response
) -> ConcernListOut:
    code = service.co_lead_ministry(ministry)
    rows = await concern_lists(session)
    (out,) = await present_concern_lists(session, {code: rows[code]})
    response.headers["ETag"] = etag(out.version)
    return out


@router.put("/countries-of-concern/{ministry}")
async def put_countries_of_concern(
    ministry: str,
    data: ConcernListIn,
    session: Session,
    principal: CurrentUser,
    response: Response,
    if_match: IfMatchRequired,
) -> ConcernListOut:
    """Replace the ministry's list (its leads; If-Match: the list's ETag, ``"0"`` while it
    was never set). Recorded, and every open incident's priority is recomputed (by the
    worker, within seconds, when there are more than 500)."""
    row, _ = await service.put_concern_list(session, principal, ministry, data.countries, if_match)
    (out,) = await present_concern_lists(session, {row.ministry_code: row})
    response.headers["ETag"] = etag(row.version)
    return out


@router.get("/countries-of-concern/{ministry}/changes")
async def list_countries_of_concern_changes(
    ministry: str,
    session: Session,
    _: CurrentUser,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[ConcernListChangeOut]:
    """Every change to the list, newest first."""
    rows, next_cursor = await service.concern_list_changes(
        session, ministry, limit=limit, cursor=cursor
    )
    return Page(items=await present_concern_changes(session, rows), next_cursor=next_cursor)
