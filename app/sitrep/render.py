"""The situation report as Markdown, in English or Japanese: the same facts, translated
labels, numbers and dates formatted per language (Babel), times in ET and JST."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from babel.dates import format_datetime
from babel.numbers import format_decimal

from app.countries import PROFILE_COUNTRIES
from app.sitrep.schemas import Language, Sitrep, SitrepIncident

# Date and time, as each language writes them (24-hour clock in both).
DATETIME_PATTERNS = {"en": "d MMM yyyy HH:mm", "ja": "yyyy年M月d日 H:mm"}
ZONES = ((ZoneInfo("America/New_York"), "et"), (ZoneInfo("Asia/Tokyo"), "jst"))

LABELS: dict[str, dict[str, str]] = {
    "en": {
        "title": "RRG situation report",
        "generated": "As of",
        "reader": "Prepared for",
        "co_lead_view": "the co-lead view (CLEAR, GREEN and AMBER incidents)",
        "window": "Changes cover the 24 hours before the report time.",
        "et": "ET",
        "jst": "JST",
        "by_severity": "Open incidents by severity",
        "severity": "Severity",
        "open": "Open",
        "new": "New (24 h)",
        "total": "Total",
        "new_incidents": "New incidents (last 24 h)",
        "open_incidents": "Open incidents by severity and priority",
        "open_shown": "Showing {shown} of {total}.",
        "key": "Key",
        "incident": "Incident",
        "status": "Status",
        "priority": "Priority",
        "minerals": "Minerals",
        "reported": "Reported",
        "status_changes": "Status changes (last 24 h)",
        "time": "Time",
        "change": "Change",
        "escalations": "Escalations (last 24 h)",
        "what": "What",
        "level": "Level",
        "overdue_actions": "Overdue actions by ministry",
        "action": "Action",
        "due": "Due",
        "overdue_by": "Overdue by",
        "hours": "{n} h",
        "days": "{n} d",
        "count_actions": "{n} overdue",
        "top_vulnerabilities": "Top supply vulnerabilities",
        "rank": "Rank",
        "mineral": "Mineral",
        "joint": "Joint exposure",
        "open_on_it": "Open incidents",
        "illustrative": "* illustrative figures, not official statistics",
        "none": "None.",
        "unset": "unset",
        "kind_action": "Action overdue: {title}",
        "kind_triage": "Awaiting triage",
        "kind_stale": "No update",
        "SEV1": "SEV1 (critical)",
        "SEV2": "SEV2 (high)",
        "SEV3": "SEV3 (moderate)",
        "SEV4": "SEV4 (low)",
        "watch": "watch",
        "reported_status": "reported",
        "triaged": "triaged",
        "responding": "responding",
        "monitoring": "monitoring",
        "resolved": "resolved",
        "closed": "closed",
        "rejected": "rejected",
        "proposed": "proposed",
        "approved": "approved",
        "in_progress": "in progress",
        "blocked": "blocked",
        "DOE": "DOE",
        "METI": "METI",
        "JOINT": "Joint",
    },
    "ja": {
        "title": "RRG 状況報告",
        "generated": "時点",
        "reader": "閲覧者",
        "co_lead_view": "共同議長国省庁の共通ビュー（CLEAR・GREEN・AMBER の事案）",
        "window": "変更は報告時刻までの24時間が対象です。",
        "et": "米国東部時間",
        "jst": "日本時間",
        "by_severity": "深刻度別の未解決事案",
        "severity": "深刻度",
        "open": "未解決",
        "new": "新規（24時間）",
        "total": "合計",
        "new_incidents": "新規事案（過去24時間）",
        "open_incidents": "深刻度・優先度順の未解決事案",
        "open_shown": "全{total}件中{shown}件を表示。",
        "key": "番号",
        "incident": "事案",
        "status": "状態",
        "priority": "優先度",
        "minerals": "鉱物",
        "reported": "報告日時",
        "status_changes": "状態の変更（過去24時間）",
        "time": "日時",
        "change": "変更",
        "escalations": "エスカレーション（過去24時間）",
        "what": "内容",
        "level": "レベル",
        "overdue_actions": "省庁別の期限超過の対応措置",
        "action": "対応措置",
        "due": "期限",
        "overdue_by": "超過",
        "hours": "{n}時間",
        "days": "{n}日",
        "count_actions": "期限超過 {n}件",
        "top_vulnerabilities": "供給脆弱性の上位",
        "rank": "順位",
        "mineral": "鉱物",
        "joint": "日米合同の脆弱度",
        "open_on_it": "未解決事案",
        "illustrative": "* 例示用の数値であり、公式統計ではありません",
        "none": "なし。",
        "unset": "未設定",
        "kind_action": "対応措置の期限超過：{title}",
        "kind_triage": "トリアージ待ち",
        "kind_stale": "更新なし",
        "SEV1": "SEV1（重大）",
        "SEV2": "SEV2（高）",
        "SEV3": "SEV3（中）",
        "SEV4": "SEV4（低）",
        "watch": "監視",
        "reported_status": "報告済み",
        "triaged": "トリアージ済み",
        "responding": "対応中",
        "monitoring": "経過観察",
        "resolved": "解決済み",
        "closed": "完了",
        "rejected": "却下",
        "proposed": "提案",
        "approved": "承認済み",
        "in_progress": "実施中",
        "blocked": "停滞",
        "DOE": "DOE（米国エネルギー省）",
        "METI": "METI（経済産業省）",
        "JOINT": "日米共同",
    },
}
assert LABELS["en"].keys() == LABELS["ja"].keys()


class Writer:
    def __init__(self, lang: Language) -> None:
        self.lang = lang
        self.labels = LABELS[lang]
        self.lines: list[str] = []

    def t(self, key: str, **values: object) -> str:
        return self.labels[key].format(**values)

    def number(self, value: float, pattern: str = "#,##0.#") -> str:
        return format_decimal(value, pattern, locale=self.lang)

    def when(self, at: datetime) -> str:
        return " / ".join(
            f"{format_datetime(at, DATETIME_PATTERNS[self.lang], tzinfo=zone, locale=self.lang)}"
            f" {self.t(label)}"
            for zone, label in ZONES
        )

    def severity(self, value: str | None) -> str:
        return self.t(value) if value else self.t("unset")

    def status(self, value: str) -> str:
        return self.t("reported_status" if value == "reported" else value)

    def duration(self, hours: float) -> str:
        if hours < 48:
            return self.t("hours", n=self.number(hours, "#,##0"))
        return self.t("days", n=self.number(hours / 24, "#,##0.#"))

    def heading(self, level: int, text: str) -> None:
        if self.lines and self.lines[-1]:
            self.lines.append("")
        self.lines.append(f"{'#' * level} {text}")
        self.lines.append("")

    def table(self, header: list[str], rows: list[list[str]]) -> None:
        if not rows:
            self.lines.append(self.t("none"))
            return
        self.lines.append("| " + " | ".join(header) + " |")
        self.lines.append("|" + "|".join("---" for _ in header) + "|")
        self.lines.extend("| " + " | ".join(cell(c) for c in row) + " |" for row in rows)


def cell(text: str) -> str:
    """Text that stays inside one table cell (titles are free text)."""
    return " ".join(text.split()).replace("\\", "\\\\").replace("|", "\\|")


def render_markdown(report: Sitrep) -> str:
    w = Writer(report.lang)
    w.lines.append(f"# {w.t('title')}")
    w.lines.append("")
    w.lines.append(f"**TLP:{report.tlp}**  ")
    w.lines.append(f"**{w.t('generated')}**: {w.when(report.at)}  ")
    reader = (
        w.t("co_lead_view")
        if report.reader.view == "co_lead"
        else f"{report.reader.display_name} ({report.reader.ministry})"
    )
    w.lines.append(f"**{w.t('reader')}**: {reader}  ")
    w.lines.append(w.t("window"))

    w.heading(2, w.t("by_severity"))
    rows = [
        [w.severity(c.severity), w.number(c.open), w.number(c.new)]
        for c in report.by_severity
        if c.severity is not None or c.open or c.new
    ]
    rows.append(
        [
            f"**{w.t('total')}**",
            f"**{w.number(sum(c.open for c in report.by_severity))}**",
            f"**{w.number(sum(c.new for c in report.by_severity))}**",
        ]
    )
    w.table([w.t("severity"), w.t("open"), w.t("new")], rows)

    def incident_rows(items: list[SitrepIncident], *, reported: bool) -> list[list[str]]:
        return [
            [
                i.key,
                i.title,
                w.severity(i.severity),
                w.status(i.status),
                w.number(i.priority_score, "#,##0.0"),
                ", ".join(i.minerals),
                *([w.when(i.reported_at)] if reported else []),
            ]
            for i in items
        ]

    columns = [w.t(k) for k in ("key", "incident", "severity", "status", "priority", "minerals")]
    w.heading(2, w.t("new_incidents"))
    w.table([*columns, w.t("reported")], incident_rows(report.new_incidents, reported=True))

    w.heading(2, w.t("open_incidents"))
    w.table(columns, incident_rows(report.open_incidents, reported=False))
    if report.open_incident_count > len(report.open_incidents):
        w.lines.append("")
        w.lines.append(
            w.t(
                "open_shown",
                shown=w.number(len(report.open_incidents)),
                total=w.number(report.open_incident_count),
            )
        )

    w.heading(2, w.t("status_changes"))
    w.table(
        [w.t("time"), w.t("key"), w.t("incident"), w.t("change")],
        [
            [w.when(c.at), c.key, c.title, f"{w.status(c.from_status)} → {w.status(c.to_status)}"]
            for c in report.status_changes
        ],
    )

    w.heading(2, w.t("escalations"))
    w.table(
        [w.t("time"), w.t("key"), w.t("incident"), w.t("what"), w.t("level")],
        [
            [
                w.when(e.at),
                e.key,
                e.title,
                w.t(f"kind_{e.kind}", title=e.action_title or ""),
                w.number(e.level),
            ]
            for e in report.escalations
        ],
    )

    w.heading(2, w.t("overdue_actions"))
    for group in report.overdue_actions:
        w.heading(3, f"{w.t(group.ministry)} — {w.t('count_actions', n=w.number(group.count))}")
        w.table(
            [w.t("key"), w.t("action"), w.t("status"), w.t("due"), w.t("overdue_by"), w.t("level")],
            [
                [
                    a.key,
                    a.title,
                    w.status(a.status),
                    w.when(a.due_at),
                    w.duration(a.overdue_hours),
                    w.number(a.escalation_level),
                ]
                for a in group.actions
            ],
        )

    w.heading(2, w.t("top_vulnerabilities"))
    any_illustrative = False
    rows = []
    for v in report.top_vulnerabilities:
        by_country = {c.country: c for c in v.countries}
        cells = []
        for country in PROFILE_COUNTRIES:
            c = by_country.get(country)
            if c is None:
                cells.append("—")
                continue
            mark = "*" if c.illustrative else ""
            any_illustrative = any_illustrative or c.illustrative
            cells.append(f"{w.number(c.exposure, '#,##0.0')}{mark}")
        name = v.mineral.name_ja if w.lang == "ja" else v.mineral.name_en
        rows.append(
            [
                w.number(v.rank),
                f"{name} ({v.mineral.code})",
                w.number(v.joint_exposure, "#,##0.0"),
                *cells,
                ", ".join(i.key for i in v.open_incidents) or "—",
            ]
        )
    w.table(
        [w.t("rank"), w.t("mineral"), w.t("joint"), *PROFILE_COUNTRIES, w.t("open_on_it")], rows
    )
    if any_illustrative:
        w.lines.append("")
        w.lines.append(w.t("illustrative"))
    return "\n".join(w.lines) + "\n"
