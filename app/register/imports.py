"""CSV import of dependency profiles: validated all or nothing.

One row per (mineral, country) profile version; every problem of every row is reported
(line, column, reason) and nothing is written while there is any. The rows go through
the same model (``ProfileIn``) and the same write path as ``PUT .../profiles/{country}``.

Columns (header line required; order free):
``mineral, country, as_of, net_import_reliance_pct, consumption_tonnes_per_year,
suppliers, domestic_capacity_tonnes_per_year, allied_capacity_tonnes_per_year,
stockpile_tonnes, days_of_cover, sectors`` and optionally ``source_title, source_url,
illustrative, note``. ``suppliers`` is ``CN:94.5;AU:3`` (country:share of imports %),
``sectors`` is ``defense;energy``; ``illustrative`` is true/false. Several rows for one
(mineral, country) are recorded as successive versions in ``as_of`` order (the latest
becomes current), so a file can carry a profile's history.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import permissions
from app.auth.service import Principal
from app.countries import CO_LEAD_COUNTRIES, PROFILE_COUNTRIES, is_country, ministry_of
from app.errors import AppError, Forbidden
from app.minerals.models import Mineral
from app.register import service
from app.register.models import DependencyProfile
from app.register.schemas import ImportProblem, ProfileIn
from app.register.service import NewProfile

REQUIRED_COLUMNS = (
    "mineral",
    "country",
    "as_of",
    "net_import_reliance_pct",
    "consumption_tonnes_per_year",
    "suppliers",
    "domestic_capacity_tonnes_per_year",
    "allied_capacity_tonnes_per_year",
    "stockpile_tonnes",
    "days_of_cover",
    "sectors",
)
# Columns that may be empty: a mineral wholly produced at home has no suppliers.
MAY_BE_EMPTY = ("suppliers", "sectors")
OPTIONAL_COLUMNS = ("source_title", "source_url", "illustrative", "note")
COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
MAX_ROWS = 10_000
_TRUE, _FALSE = {"true", "yes", "1", "y"}, {"false", "no", "0", "n", ""}
# A ProfileIn field (first part of a validation error's location) -> its CSV column.
_SOURCE_COLUMNS = {"title": "source_title", "url": "source_url"}


class ImportRefused(AppError):
    """The file has problems; ``errors`` lists each (line, column, reason)."""

    status, slug, title = 422, "import-refused", "Import refused"

    def __init__(self, problems: Sequence[ImportProblem]) -> None:
        lines = sorted({p.line for p in problems if p.line is not None})
        super().__init__(
            f"{len(problems)} problem(s) on {len(lines)} line(s); nothing was imported",
            extra={"errors": [_problem_json(p) for p in problems]},
        )
        self.problems = list(problems)


def _problem_json(p: ImportProblem) -> dict[str, Any]:
    return {
        "location": "body",
        "line": p.line,
        "column": p.column,
        "field": p.column or "body",
        "reason": p.reason,
    }


@dataclass(frozen=True)
class ParsedRow:
    line: int
    profile: NewProfile


def _list(cell: str) -> list[str]:
    return [part.strip() for part in cell.split(";") if part.strip()]


def _suppliers(cell: str) -> list[dict[str, str]]:
    out = []
    for part in _list(cell):
        country, sep, share = part.partition(":")
        if not sep:
            raise ValueError(f"{part!r} is not COUNTRY:SHARE (e.g. CN:94.5;AU:3)")
        out.append({"country": country.strip().upper(), "share_pct": share.strip()})
    return out


def _boolean(cell: str) -> bool:
    value = cell.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError("must be true or false")


def _column_of(loc: tuple[int | str, ...]) -> str:
    if not loc:
        return "row"
    head = str(loc[0])
    if head == "sources":
        return _SOURCE_COLUMNS.get(str(loc[-1]), "source_url")
    return head


def _check_row(
    line: int, cells: dict[str, str], minerals: Collection[str]
) -> tuple[NewProfile | None, list[ImportProblem]]:
    problems: list[ImportProblem] = []

    def bad(column: str, reason: str) -> None:
        problems.append(ImportProblem(line=line, column=column, reason=reason))

    for column in REQUIRED_COLUMNS:
        if column not in MAY_BE_EMPTY and not cells.get(column, "").strip():
            bad(column, "a value is required")
    mineral = cells.get("mineral", "").strip()
    if mineral and mineral not in minerals:
        bad("mineral", f"unknown mineral {mineral!r}")
    country = cells.get("country", "").strip().upper()
    if country and not is_country(country):
        bad("country", f"{country!r} is not an ISO 3166-1 alpha-2 country code")
    elif country and country not in CO_LEAD_COUNTRIES:
        bad("country", f"profiles are kept for {', '.join(PROFILE_COUNTRIES)} only")
    data: dict[str, Any] = {
        name: cells[name].strip()
        for name in REQUIRED_COLUMNS[2:]
        if name not in ("suppliers", "sectors") and cells.get(name, "").strip()
    }
    try:
        data["suppliers"] = _suppliers(cells.get("suppliers", ""))
    except ValueError as exc:
        bad("suppliers", str(exc))
    data["sectors"] = _list(cells.get("sectors", ""))
    url, title = cells.get("source_url", "").strip(), cells.get("source_title", "").strip()
    if url:
        data["sources"] = [{"title": title or url, "url": url}]
    elif title:
        bad("source_url", "a source title needs a source URL")
    try:
        data["illustrative"] = _boolean(cells.get("illustrative", ""))
    except ValueError as exc:
        bad("illustrative", str(exc))
    data["note"] = cells.get("note", "").strip()
    already = {p.column for p in problems}
    try:
        profile = ProfileIn.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            column = _column_of(error["loc"])
            if column not in already:  # "required" already said it
                bad(column, str(error["msg"]))
        return None, problems
    if problems:
        return None, problems
    return NewProfile(mineral, country, profile), []


def parse(text: str, minerals: Collection[str]) -> tuple[list[ParsedRow], list[ImportProblem]]:
    """Every row checked; returns the good rows and every problem found."""
    problems: list[ImportProblem] = []
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    try:
        header = [name.strip() for name in next(reader, [])]
    except csv.Error as exc:
        return [], [ImportProblem(line=1, column=None, reason=f"malformed CSV: {exc}")]
    if not header:
        return [], [ImportProblem(line=1, column=None, reason="the file is empty")]
    for name in header:
        if name not in COLUMNS:
            problems.append(ImportProblem(line=1, column=name, reason="unknown column"))
    seen_columns = set(header)
    for name in REQUIRED_COLUMNS:
        if name not in seen_columns:
            problems.append(ImportProblem(line=1, column=name, reason="missing column"))
    if len(seen_columns) != len(header):
        problems.append(ImportProblem(line=1, column=None, reason="a column is named twice"))
    if problems:
        return [], problems
    rows: list[ParsedRow] = []
    count, end_of_last = 0, reader.line_num
    while True:
        start = end_of_last + 1
        try:
            values = next(reader, None)
        except csv.Error as exc:
            problems.append(ImportProblem(line=start, column=None, reason=f"malformed CSV: {exc}"))
            break
        end_of_last = reader.line_num
        if values is None:
            break
        if not any(v.strip() for v in values):
            continue
        count += 1
        if count > MAX_ROWS:
            problems.append(
                ImportProblem(line=start, column=None, reason=f"more than {MAX_ROWS} rows")
            )
            break
        if len(values) != len(header):
            problems.append(
                ImportProblem(
                    line=start,
                    column=None,
                    reason=f"{len(values)} values for {len(header)} columns",
                )
            )
            continue
        profile, row_problems = _check_row(start, dict(zip(header, values, strict=True)), minerals)
        problems.extend(row_problems)
        if profile is not None:
            rows.append(ParsedRow(start, profile))
    if not problems and not rows:
        problems.append(ImportProblem(line=None, column=None, reason="the file has no rows"))
    return rows, problems


def decode(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ImportRefused(
            [ImportProblem(line=None, column=None, reason=f"the file is not UTF-8 text ({exc})")]
        ) from None


async def import_csv(
    session: AsyncSession, principal: Principal, text: str
) -> tuple[list[tuple[int, DependencyProfile]], int]:
    """Check the whole file, then record every row or none. Returns (line, new version)
    pairs and how many incidents had their priority recomputed."""
    minerals = set((await session.scalars(select(Mineral.code))).all())
    rows, problems = parse(text, minerals)
    if problems:
        raise ImportRefused(problems)
    forbidden = [
        ImportProblem(
            line=r.line,
            column="country",
            reason=f"only leads of {ministry_of(r.profile.country)} may change "
            f"{r.profile.country} profiles",
        )
        for r in rows
        if not permissions.may_keep_profiles(principal.user, r.profile.country)
    ]
    if forbidden:
        raise Forbidden(
            f"You may not change the profiles on {len(forbidden)} line(s); nothing was imported",
            extra={"errors": [_problem_json(p) for p in forbidden]},
        )
    rows.sort(key=lambda r: (r.profile.data.as_of, r.line))  # history in date order
    written, recomputed = await service.import_profiles(
        session, principal, [r.profile for r in rows]
    )
    return [(r.line, w) for r, w in zip(rows, written, strict=True)], recomputed
