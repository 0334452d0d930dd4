"""A residents import as a reviewed change. The file replaces the directory: whoever it
no longer lists is moved out, and the next fire texts nobody there. So a file refused as
a whole changes nothing, the preview says how many residents are added, changed and
moved out before anything is written, and moving out more than a small share of the
directory needs an explicit confirmation (the console's tick box, the CLI's
`--allow-removals`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from alertd.directory.residents import Resident, ResidentsFile
from alertd.store import Conn
from alertd.store.directory import active_keys, import_residents

#: moving out more than this share of the residents (and more than one) is confirmed
REMOVALS_SHARE = 0.05


class NeedsConfirmation(Exception):
    """The import would move out more residents than it may without a confirmation."""


@dataclass(frozen=True, slots=True)
class Plan:
    """What the import would do to the directory as it is now."""

    file: ResidentsFile
    active: int
    added: int
    changed: int
    unchanged: int
    moved_out: int

    @property
    def needs_confirmation(self) -> bool:
        return not self.file.refused and self.moved_out > allowed_removals(self.active)

    def summary(self, lang: str = "en") -> str:
        """What the import does, in `lang` (the record and the CLI say it in English)."""
        name, skipped = self.file.name, len(self.file.problems)
        if lang == "zh":
            if self.file.refused:
                return f"{name}：文件被拒绝，未做任何更改"
            return (
                f"{name}：新增 {self.added}，变更 {self.changed}，未变 {self.unchanged}，"
                f"{self.active} 位住户中搬离 {self.moved_out}，跳过 {skipped} 行"
            )
        if self.file.refused:
            return f"{name}: refused, nothing was changed"
        return (
            f"{name}: {self.added} added, {self.changed} changed, "
            f"{self.unchanged} unchanged, {self.moved_out} moved out of {self.active}, "
            f"{skipped} row(s) skipped"
        )

    def caution(self, lang: str = "en") -> str:
        """Why a confirmation is needed, in a sentence."""
        share = self.moved_out / self.active if self.active else 0
        if lang == "zh":
            return (
                f"此文件将使 {self.active} 位住户中的 {self.moved_out} 位（{share:.0%}）搬离，"
                "他们将不再收到安全短信。这是完整的住户名单吗？"
            )
        return (
            f"this file would move out {self.moved_out} of the {self.active} residents "
            f"({share:.0%}): they would get no more safety texts. Is it the whole directory?"
        )


def allowed_removals(active: int) -> int:
    return max(1, int(active * REMOVALS_SHARE))


def plan(conn: Conn, file: ResidentsFile) -> Plan:
    """Compare the file with the directory of its sites; writes nothing."""
    now = {
        row[:4]: (row[4], row[5], row[6], bool(row[7]), row[8])
        for row in active_keys(conn, file.sites, ", floor, name, language, vulnerable, notes")
    }
    if file.refused:
        return Plan(file, len(now), 0, 0, 0, 0)
    added = changed = 0
    keys = set()
    for r in file.residents:
        key = r.key
        keys.add(key)
        if key not in now:
            added += 1
        elif now[key] != _values(r):
            changed += 1
    gone = [k for k in now.keys() - keys if k[:3] not in file.unsure]
    return Plan(file, len(now), added, changed, len(keys) - added - changed, len(gone))


def apply(conn: Conn, file: ResidentsFile, now: datetime, *, allow_removals: bool) -> Plan:
    """Import the file if it may be: planned again against the directory as it is now
    (another import may have come between preview and confirmation)."""
    planned = plan(conn, file)
    if planned.file.refused:
        return planned
    if planned.needs_confirmation and not allow_removals:
        raise NeedsConfirmation(planned.caution())
    import_residents(conn, file.residents, now, keep=file.unsure, sites=file.sites)
    return planned


def _values(r: Resident) -> tuple[str, str, str, bool, str]:
    return (r.floor, r.name, r.language, r.vulnerable, r.notes)
