"""Languages, catalogues and formatting for the web client.

Catalogues are the ``.po`` files under ``locale/``, compiled in memory on first use (no
build step); dates and numbers are formatted by Babel for the reader's language, and every
time is shown in Washington and Tokyo time, the reader's own zone first.
"""

from __future__ import annotations

import gettext
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from io import BytesIO
from pathlib import Path
from zoneinfo import ZoneInfo

from babel.dates import format_datetime, format_timedelta
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from markupsafe import Markup, escape

LANGUAGES = ("en", "ja")
DEFAULT_LANGUAGE = "en"
LOCALE_DIR = Path(__file__).parent / "locale"
WASHINGTON = ZoneInfo("America/New_York")
TOKYO = ZoneInfo("Asia/Tokyo")


@cache
def translations(language: str) -> gettext.NullTranslations:
    """The language's catalogue, compiled from its .po file."""
    po = LOCALE_DIR / language / "LC_MESSAGES" / "messages.po"
    if not po.exists():
        return gettext.NullTranslations()
    with po.open("rb") as source:
        catalog = read_po(source, locale=language)
    compiled = BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)


def pick_language(preferred: str | None, accept_language: str | None = None) -> str:
    if preferred in LANGUAGES:
        return preferred
    for part in (accept_language or "").split(","):
        code = part.split(";")[0].strip().lower()[:2]
        if code in LANGUAGES:
            return code
    return DEFAULT_LANGUAGE


@dataclass(frozen=True)
class Formatter:
    """Dates, numbers and countdowns for one reader."""

    language: str
    timezone: str
    now: datetime

    @property
    def zones(self) -> tuple[tuple[ZoneInfo, str], tuple[ZoneInfo, str]]:
        """Washington and Tokyo, the reader's own first (Tokyo first for readers in Asia)."""
        washington, tokyo = (WASHINGTON, "ET"), (TOKYO, "JST")
        return (tokyo, washington) if self.timezone.startswith("Asia/") else (washington, tokyo)

    def one(self, value: datetime, zone: ZoneInfo) -> str:
        return format_datetime(value, "medium", tzinfo=zone, locale=self.language)

    def when(self, value: datetime | None) -> Markup:
        """A time in both capitals, as a <time> element."""
        if value is None:
            return Markup("—")
        parts = [
            Markup('<span class="clock">{} <abbr>{}</abbr></span>').format(
                self.one(value, zone), label
            )
            for zone, label in self.zones
        ]
        return Markup('<time datetime="{}">{}</time>').format(
            value.isoformat(), Markup(" · ").join(parts)
        )

    def number(self, value: float | int | None, digits: int = 1) -> str:
        if value is None:
            return "—"
        return format_decimal(round(value, digits), locale=self.language)

    def countdown(self, deadline: datetime | None) -> Markup:
        """Time left until the deadline, or how long ago it passed."""
        if deadline is None:
            return Markup("—")
        left = deadline - self.now
        # add_direction reads a positive delta as "in …" and a negative one as "… ago".
        text = format_timedelta(
            left, threshold=1.5, add_direction=True, granularity="minute", locale=self.language
        )
        css = "countdown overdue" if left < timedelta(0) else "countdown"
        return Markup('<span class="{}" data-deadline="{}">{}</span>').format(
            css, deadline.isoformat(), escape(text)
        )
