"""Demo users and the demo scenario, for a fresh database."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import service as auth_service
from app.auth.models import User
from app.auth.roles import ROLES
from app.auth.schemas import TokenCreate, UserCreate
from app.auth.service import Principal
from app.demo_scenario import load_scenario

# Every demo user signs in to the web client with this password (documented in README):
# the demo is for a local machine, never for production data.
DEMO_PASSWORD = "rrg-demo-2026"  # noqa: S105 - a documented demo credential

DEMO_NAMES = {
    "DOE": {
        "viewer": "Dana Viewer",
        "responder": "Riley Responder",
        "lead": "Logan Lead",
        "admin": "Alex Admin",
    },
    "METI": {
        "viewer": "閲覧 花子",
        "responder": "対応 太郎",
        "lead": "主任 健",
        "admin": "管理 さくら",
    },
}


async def load_demo(session: AsyncSession) -> list[str] | None:
    """Seed demo users into an empty database; return their credentials as lines
    (``email | password | API token``), or None when the database already has users."""
    if await session.scalar(select(func.count()).select_from(User)):
        return None
    lines = []
    cast: dict[tuple[str, str], User] = {}
    for ministry, names in DEMO_NAMES.items():
        for role in ROLES:
            password = DEMO_PASSWORD
            user = await auth_service.create_user(
                session,
                UserCreate(
                    email=f"{role}@{ministry.lower()}.demo.rrg",
                    display_name=names[role],
                    ministry=ministry,
                    role=role,
                    language="ja" if ministry == "METI" else "en",
                    co_chair=role == "admin",
                    password=password,
                ),
                by=None,
            )
            cast[(ministry, role)] = user
            _, token = await auth_service.create_token(
                session, Principal(user=user), TokenCreate(name="demo")
            )
            lines.append(f"{user.email} | {password} | {token}")
    await load_scenario(session, cast)
    return lines
