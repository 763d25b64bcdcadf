"""Write the web client's .po catalogues: every message of the templates and web modules
(extracted with Babel) plus the vocabularies and guard messages the pages translate, with
the translations kept in tools/translations_*.py. Run: python tools/catalogues.py
(``--check``: write nothing; fail if a message lacks a Japanese translation or the
committed catalogues differ from what would be written)."""

from __future__ import annotations

import importlib.util
import sys
from io import BytesIO
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import write_po

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "app" / "web"


def extracted() -> set[str]:
    found: set[str] = set()
    sources = [
        (
            WEB / "templates",
            [("**.html", "jinja2")],
            {"**.html": {"extensions": "jinja2.ext.i18n"}},
        ),
        (WEB, [("**.py", "python")], {}),
    ]
    for folder, methods, options in sources:
        for _file, _line, message, _comments, _context in extract_from_dir(
            str(folder), method_map=methods, options_map=options
        ):
            found.add(message if isinstance(message, str) else message[0])
    return found


def load(name: str) -> dict[str, str]:
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return dict(module.MESSAGES)


def main() -> int:
    check = "--check" in sys.argv[1:]
    messages = extracted()
    stale = []
    translations = {"en": load("translations_en"), "ja": load("translations_ja")}
    everything = sorted(messages | set(translations["ja"]) | set(translations["en"]))
    missing = [m for m in sorted(messages) if m not in translations["ja"]]
    for language, table in translations.items():
        catalog = Catalog(locale=language, project="rrg", charset="utf-8")
        for msgid in everything:
            catalog.add(msgid, table.get(msgid, ""))
        target = WEB / "locale" / language / "LC_MESSAGES" / "messages.po"
        buffer = BytesIO()
        write_po(buffer, catalog, width=100, omit_header=True, sort_output=True)
        if check:
            if not target.exists() or target.read_bytes() != buffer.getvalue():
                stale.append(str(target.relative_to(ROOT)))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(buffer.getvalue())
    if missing:
        print("untranslated (ja):", *missing, sep="\n  ", file=sys.stderr)
    if stale:
        print("out of date (run tools/catalogues.py):", *stale, sep="\n  ", file=sys.stderr)
    return 1 if missing or stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
