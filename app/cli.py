"""The ``rrg`` command."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from app import heap
from app.config import Settings, get_settings
from app.db import Database
from app.errors import AppError

T = TypeVar("T")

cli = typer.Typer(help="RRG coordination service", no_args_is_help=True, add_completion=False)
users_cli = typer.Typer(help="Manage users", no_args_is_help=True)
tokens_cli = typer.Typer(help="Manage API tokens", no_args_is_help=True)
audit_cli = typer.Typer(help="Check the tamper-evident timeline", no_args_is_help=True)
ministries_cli = typer.Typer(help="Manage partner organisations", no_args_is_help=True)
import_cli = typer.Typer(help="Import data from files", no_args_is_help=True)
cli.add_typer(users_cli, name="users")
cli.add_typer(ministries_cli, name="ministries")
cli.add_typer(import_cli, name="import")
cli.add_typer(tokens_cli, name="tokens")
cli.add_typer(audit_cli, name="audit")

OPENAPI_PATH = Path("openapi/openapi.json")
DEMO_CREDENTIALS = Path("var/demo-credentials.txt")


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.secho(message, fg=typer.colors.RED, err=True)
    return typer.Exit(code=code)


def _invalid(exc: Any) -> typer.Exit:
    """A pydantic ValidationError as one line naming each field."""
    return _fail("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))


def run_in_unit_of_work(
    settings: Settings,
    work: Callable[[AsyncSession], Awaitable[T]],
    *,
    readonly: bool = False,
) -> T:
    async def main() -> T:
        db = Database.from_settings(settings)
        try:
            async with db.unit_of_work(readonly=readonly) as session:
                return await work(session)
        finally:
            await db.dispose()

    return asyncio.run(main())


def migrate_database(settings: Settings) -> None:
    from app.migrate import upgrade

    path = settings.sqlite_path()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database_url, audit_key=settings.audit_key_bytes())


def database_revision(settings: Settings) -> str | None:
    from app.revisions import current_revision

    async def main() -> str | None:
        db = Database.from_settings(settings)
        try:
            async with db.engine.connect() as conn:
                return await conn.run_sync(current_revision)
        finally:
            await db.dispose()

    return asyncio.run(main())


@cli.command()
def migrate() -> None:
    """Bring the database schema to the latest migration."""
    settings = get_settings()
    migrate_database(settings)
    typer.echo(f"database at {database_revision(settings)}")


@cli.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (RRG_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (RRG_PORT)")] = None,
) -> None:
    """Serve the API, the web client and the scheduler."""
    import uvicorn

    from app.main import create_app
    from app.revisions import head_revision, is_behind

    settings = get_settings()
    if settings.is_sqlite:
        migrate_database(settings)  # an embedded database is ours to migrate
    else:
        current, head = database_revision(settings), head_revision()
        if is_behind(current, head):
            raise _fail(
                f"The database is at migration {current}, this version needs {head}. "
                "Run `rrg migrate` first."
            )
    host, port = host or settings.host, port or settings.port
    app = create_app(settings)
    heap.settle()
    typer.echo(f"RRG serving on http://{host}:{port}")
    # On SIGTERM uvicorn stops accepting, lets requests in flight finish (up to the grace
    # period), then runs the lifespan's shutdown: the dispatcher finishes its sends.
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=settings.log_level.lower(),
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
    )


@cli.command()
def demo() -> None:
    """Load demo users (and the demo scenario) into an empty database; print credentials."""
    from app.demo import load_demo

    lines = run_in_unit_of_work(get_settings(), load_demo)
    if lines is None:
        if DEMO_CREDENTIALS.exists():
            typer.echo("Demo credentials (from the first run):")
            typer.echo(DEMO_CREDENTIALS.read_text(), nl=False)
        else:
            typer.echo("The database already has users; no demo data loaded.")
        return
    text = "\n".join(["email | password | API token", *lines]) + "\n"
    DEMO_CREDENTIALS.parent.mkdir(parents=True, exist_ok=True)
    DEMO_CREDENTIALS.touch(mode=0o600)
    DEMO_CREDENTIALS.write_text(text)
    typer.echo("Demo users created (credentials kept in " + str(DEMO_CREDENTIALS) + "):")
    typer.echo(text, nl=False)


@cli.command()
def openapi(
    output: Annotated[Path, typer.Option(help="Where to write the contract")] = OPENAPI_PATH,
) -> None:
    """Write the OpenAPI contract to openapi/openapi.json."""
    from app.main import create_app

    spec = create_app(Settings(env="test")).openapi()
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(spec, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    typer.echo(f"wrote {output}")


@users_cli.command("create")
def users_create(
    email: Annotated[str, typer.Option()],
    name: Annotated[str, typer.Option()],
    ministry: Annotated[str, typer.Option(help="DOE or METI (or a partner's code)")],
    role: Annotated[str, typer.Option(help="viewer | responder | lead | admin")] = "viewer",
    co_chair: Annotated[bool, typer.Option("--co-chair")] = False,
    password_stdin: Annotated[bool, typer.Option("--password-stdin")] = False,
) -> None:
    """Create a user."""
    from pydantic import ValidationError

    from app.auth import service
    from app.auth.schemas import UserCreate

    password = sys.stdin.readline().rstrip("\n") if password_stdin else None
    try:
        data = UserCreate(
            email=email,
            display_name=name,
            ministry=ministry,
            role=role,
            co_chair=co_chair,
            password=password,
        )
    except ValidationError as exc:
        raise _invalid(exc) from None

    async def work(session: AsyncSession) -> Any:
        return await service.create_user(session, data, by=None)

    try:
        user = run_in_unit_of_work(get_settings(), work)
    except AppError as exc:
        raise _fail(exc.detail) from None
    typer.echo(f"created {user.email} ({user.role}, {ministry.upper()}) id={user.id}")


@tokens_cli.command("create")
def tokens_create(
    email: Annotated[str, typer.Option()],
    name: Annotated[str, typer.Option()],
) -> None:
    """Create an API token for a user and print it (once)."""
    from app.auth import service
    from app.auth.schemas import TokenCreate

    async def work(session: AsyncSession) -> str | None:
        user = await service.find_user_by_email(session, email)
        if user is None:
            return None
        principal = service.Principal(user=user)  # the operator, acting for the user
        _, plaintext = await service.create_token(session, principal, TokenCreate(name=name))
        return plaintext

    token = run_in_unit_of_work(get_settings(), work)
    if token is None:
        raise _fail(f"No user with email {email}")
    typer.echo(token)


@ministries_cli.command("create")
def ministries_create(
    code: Annotated[str, typer.Option(help="Short code, e.g. JOGMEC (stored upper-case)")],
    name: Annotated[str, typer.Option(help="The organisation's English name")],
    country: Annotated[str, typer.Option(help="ISO 3166 alpha-2, e.g. JP")],
    timezone: Annotated[str, typer.Option(help="IANA time zone, e.g. Asia/Tokyo")],
    name_ja: Annotated[str | None, typer.Option(help="Its Japanese name")] = None,
) -> None:
    """Add a partner organisation."""
    from pydantic import ValidationError

    from app.errors import AppError
    from app.ministries import service
    from app.ministries.schemas import MinistryCreate

    try:
        data = MinistryCreate(
            code=code, name=name, name_ja=name_ja, country=country, timezone=timezone
        )
    except ValidationError as exc:
        raise _invalid(exc) from None

    async def work(session: AsyncSession) -> Any:
        return await service.create_partner(session, data, by=None)

    try:
        ministry = run_in_unit_of_work(get_settings(), work)
    except AppError as exc:
        raise _fail(exc.detail) from None
    typer.echo(f"created partner {ministry.code} ({ministry.name}) id={ministry.id}")


@audit_cli.command("verify")
def audit_verify(
    key: Annotated[str | None, typer.Argument(help="Only this incident (e.g. RRG-0001)")] = None,
) -> None:
    """Recompute the timeline hash chains; name the first broken link of each."""
    from sqlalchemy import func, select

    from app.incidents.models import Incident
    from app.timeline import service
    from app.timeline.models import TimelineEvent

    key = key.upper() if key is not None else None

    async def work(session: AsyncSession) -> tuple[int, int, int, list[service.BrokenLink]]:
        incidents = select(func.count(), func.count().filter(Incident.event_count > 0))
        events = select(func.count()).select_from(TimelineEvent)
        if key is not None:
            incidents = incidents.where(Incident.key == key)
            events = events.join(Incident).where(Incident.key == key)
        n_incidents, n_chains = (await session.execute(incidents.select_from(Incident))).one()
        n_events = (await session.execute(events)).scalar_one()
        return n_incidents, n_chains, n_events, await service.verify(session, key)

    n_incidents, n_chains, n_events, broken = run_in_unit_of_work(
        get_settings(), work, readonly=True
    )
    if key is not None and n_incidents == 0:
        raise _fail(f"No incident {key}", code=2)
    for link in broken:
        typer.secho(
            f"BROKEN {link.incident_key} at seq {link.seq}: {link.reason}", fg=typer.colors.RED
        )
    typer.echo(f"{n_incidents} incidents, {n_events} events checked, {len(broken)} broken chains")
    if broken and len(broken) == n_chains and all(link.seq == 1 for link in broken):
        typer.secho(
            "Every chain breaks at its first event: is RRG_AUDIT_KEY the key these chains "
            "were written with?",
            fg=typer.colors.YELLOW,
            err=True,
        )
    if broken:
        raise typer.Exit(code=1)


@audit_cli.command("rekey")
def audit_rekey(
    ignore_other_sessions: Annotated[
        bool,
        typer.Option(
            "--ignore-other-sessions",
            help="Run even though other sessions are connected to the database (PostgreSQL)",
        ),
    ] = False,
) -> None:
    """Re-hash every timeline chain from RRG_AUDIT_KEY to RRG_NEW_AUDIT_KEY.

    Stop every API replica and worker first, then start them again with RRG_AUDIT_KEY set to
    the new key. Chains already broken keep their break (reported; exit 1). Running it again
    resumes an interrupted run."""
    import os

    from pydantic import SecretStr, ValidationError

    from app.logs import configure_logging
    from app.timeline import rekey

    settings = get_settings()
    new_value = os.environ.get("RRG_NEW_AUDIT_KEY", "")
    if not new_value:
        raise _fail("Set RRG_NEW_AUDIT_KEY to the new audit key (RRG_AUDIT_KEY is the old one)")
    try:
        # The new key must pass the same rules as RRG_AUDIT_KEY (production: length, distinct).
        new_settings = Settings(**{**settings.model_dump(), "audit_key": SecretStr(new_value)})
    except ValidationError as exc:
        raise _invalid(exc) from None
    old_key, new_key = settings.audit_key_bytes(), new_settings.audit_key_bytes()
    if old_key == new_key:
        raise _fail("RRG_NEW_AUDIT_KEY is the key in use (RRG_AUDIT_KEY)")
    configure_logging(settings.log_level, settings.effective_log_format)
    log = logging.getLogger("rrg.audit")

    def progress(report: rekey.RekeyReport) -> None:
        typer.echo(
            f"  {report.chains_rekeyed + report.chains_already_new + len(report.broken)} "
            f"chains done, {report.events_rekeyed} events re-keyed",
            err=True,
        )

    async def main() -> rekey.RekeyReport:
        db = Database.from_settings(settings)
        try:
            others = await rekey.other_sessions(db)
            if others and not ignore_other_sessions:
                raise _fail(
                    "Other sessions are connected to the database; stop every API replica "
                    "and worker first (or pass --ignore-other-sessions):\n  " + "\n  ".join(others),
                    code=2,
                )
            log.warning(
                "timeline re-keying started",
                extra={
                    "old_key_fingerprint": rekey.fingerprint(old_key),
                    "new_key_fingerprint": rekey.fingerprint(new_key),
                },
            )
            return await rekey.rekey(db, old_key, new_key, progress=progress)
        finally:
            await db.dispose()

    report = asyncio.run(main())
    log.warning(
        "timeline re-keying finished",
        extra={
            "old_key_fingerprint": rekey.fingerprint(old_key),
            "new_key_fingerprint": rekey.fingerprint(new_key),
            "chains_rekeyed": report.chains_rekeyed,
            "events_rekeyed": report.events_rekeyed,
            "chains_already_new": report.chains_already_new,
            "chains_broken": len(report.broken),
        },
    )
    for link in report.broken:
        typer.secho(
            f"BROKEN {link.incident_key} at seq {link.seq}: {link.reason} (left as it was)",
            fg=typer.colors.RED,
        )
    typer.echo(
        f"key {rekey.fingerprint(old_key)} -> {rekey.fingerprint(new_key)}: "
        f"{report.chains_rekeyed} chains ({report.events_rekeyed} events) re-keyed, "
        f"{report.chains_already_new} already under the new key, {len(report.broken)} broken"
    )
    if report.broken:
        raise typer.Exit(code=1)


@cli.command()
def sweep(
    at: Annotated[
        datetime | None, typer.Option(help="Sweep as if at this time (ISO 8601, UTC if naive)")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Change nothing")] = False,
) -> None:
    """Run one escalation sweep and print each escalation (item, level, recipients); exits 1
    after printing what could not be done, if anything."""
    from app.escalation.sweep import sweep as run_sweep

    when = _as_utc(at)

    async def main() -> None:
        db = Database.from_settings(get_settings())
        try:
            report = await run_sweep(db, when, dry_run=dry_run)
        finally:
            await db.dispose()
        verb = "would escalate" if dry_run else "escalated"
        for record in report.escalations:
            typer.echo(record.describe())
        typer.echo(f"{verb} {len(report.escalations)} item-levels at {report.at.isoformat()}")
        for failure in report.failures:
            typer.secho(failure.describe(), fg=typer.colors.RED, err=True)
        if report.failures:
            raise typer.Exit(code=1)

    asyncio.run(main())


@cli.command()
def worker(
    port: Annotated[
        int | None,
        typer.Option(help="Serve /healthz, /readyz and /metrics on this port (RRG_WORKER_PORT)"),
    ] = None,
) -> None:
    """Run the background work without serving the API (for worker replicas): the
    escalation sweep and other periodic jobs, and the webhook dispatcher."""
    from app.worker import Worker

    settings = get_settings()
    port = port or settings.worker_port

    async def main() -> None:
        db = Database.from_settings(settings)
        worker = Worker(settings, db)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await worker.start()
        heap.settle()
        ops = None if port is None else _ops_server(settings, db, port)
        ops_task = None if ops is None else asyncio.create_task(ops.serve())
        typer.echo(
            f"RRG worker: sweeping every {settings.sweep_interval_seconds:g}s, "
            "dispatching webhooks"
            + ("" if port is None else f"; metrics on http://{settings.host}:{port}/metrics"),
            err=True,
        )
        try:
            await stop.wait()
        finally:
            if ops is not None and ops_task is not None:
                ops.should_exit = True
                await ops_task
            await worker.stop()
            await db.dispose()

    asyncio.run(main())


def _ops_server(settings: Settings, db: Database, port: int) -> Any:
    """The worker's health and metrics server (its signals are the worker's)."""
    import uvicorn

    from app.main import create_ops_app

    config = uvicorn.Config(
        create_ops_app(settings, db),
        host=settings.host,
        port=port,
        log_config=None,
        access_log=False,
        log_level=settings.log_level.lower(),
    )

    class OpsServer(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield  # the worker's own handlers stop it, and this server with it

    return OpsServer(config)


def _as_utc(at: datetime | None) -> datetime | None:
    return None if at is None else at if at.tzinfo else at.replace(tzinfo=UTC)


@import_cli.command("profiles")
def import_profiles(
    file: Annotated[Path, typer.Argument(help="CSV file (see README for the columns)")],
    as_email: Annotated[
        str, typer.Option("--as", help="The lead recording the profiles (their e-mail)")
    ],
) -> None:
    """Import dependency profiles from CSV, all or nothing; print every problem."""
    from app.auth import service as auth_service
    from app.auth.service import Principal
    from app.register import imports

    try:
        body = file.read_bytes()
    except OSError as exc:
        raise _fail(f"cannot read {file}: {exc.strerror}") from None

    async def work(session: AsyncSession) -> tuple[int, int]:
        user = await auth_service.find_user_by_email(session, as_email)
        if user is None or not user.active:
            raise _fail(f"No active user with email {as_email}")
        written, recomputed = await imports.import_csv(
            session, Principal(user=user), imports.decode(body)
        )
        return len(written), recomputed

    try:
        imported, recomputed = run_in_unit_of_work(get_settings(), work)
    except AppError as exc:
        for problem in exc.extra.get("errors", []):
            where = f"line {problem['line']}" if problem.get("line") else "file"
            column = f", column {problem['column']}" if problem.get("column") else ""
            typer.echo(f"{file}: {where}{column}: {problem['reason']}", err=True)
        raise _fail(exc.detail) from None
    typer.echo(f"imported {imported} profiles; recomputed {recomputed} incident priorities")


@cli.command()
def sitrep(
    lang: Annotated[str, typer.Option(help="en | ja")] = "en",
    at: Annotated[
        datetime | None, typer.Option(help="Report time (ISO 8601, UTC if naive); default now")
    ] = None,
    as_email: Annotated[
        str | None,
        typer.Option(
            "--as",
            help="Write it for this user (their visibility); default: the co-lead view "
            "(CLEAR, GREEN and AMBER incidents)",
        ),
    ] = None,
    output_format: Annotated[str, typer.Option("--format", help="markdown | json")] = "markdown",
) -> None:
    """Print the situation report."""
    from app import clock
    from app.auth import service as auth_service
    from app.kit.types import accepted_time
    from app.sitrep import service as sitrep_service
    from app.sitrep.render import render_markdown

    if lang not in ("en", "ja"):
        raise _fail("--lang must be en or ja")
    if output_format not in ("markdown", "json"):
        raise _fail("--format must be markdown or json")
    try:
        when = accepted_time(_as_utc(at) or clock.now())
    except ValueError as exc:
        raise _fail(f"--at {exc}") from None

    async def work(session: AsyncSession) -> str:
        if as_email is None:
            reader, co_lead_view = sitrep_service.co_lead_reader(), True
        else:
            found = await auth_service.find_user_by_email(session, as_email)
            if found is None or not found.active:
                raise _fail(f"No active user with email {as_email}")
            reader, co_lead_view = found, False
        report = await sitrep_service.build(
            session,
            reader,
            when,
            "ja" if lang == "ja" else "en",
            co_lead_view=co_lead_view,
        )
        if output_format == "json":
            return report.model_dump_json(indent=2)
        return render_markdown(report)

    try:
        text = run_in_unit_of_work(get_settings(), work, readonly=True)
    except AppError as exc:
        raise _fail(exc.detail) from None
    typer.echo(text, nl=not text.endswith("\n"))


def main() -> None:
    from app.logs import configure_logging

    try:
        settings = get_settings()
        configure_logging(settings.log_level, settings.effective_log_format)
    except Exception:  # noqa: S110 - bad settings are reported by the command that reads them
        pass
    cli()
