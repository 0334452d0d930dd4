"""The supervisor's month: incidents by kind, building, month and hour; response
times; leaks reached within 30 minutes; drills; messages; noisy and offline devices.
Each figure is a `Table`, so that the page, its chart and its CSV are the same numbers."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from alertd.incidents.report import drill_in_time, took_s
from alertd.store import Conn
from alertd.store import analytics as db
from alertd.store import devices as devices_db
from alertd.store.analytics import Period as Period  # the pages name it here

#: a technician on site within this counts as a leak reached in time
ON_SITE_WITHIN = timedelta(minutes=30)


@dataclass(slots=True)
class Table:
    name: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    #: draw it as bars: the label column and the value column
    chart: tuple[int, int] | None = None


def _p90(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]


def _minutes(value: float | None) -> str:
    return "" if value is None else f"{value / 60:.1f}"


def analyse(
    conn: Conn,
    period: Period,
    tz: tzinfo,
    leak_playbooks: set[str],
    ack_targets: dict[str, float],
    device_sites: Mapping[str, str] | None = None,
) -> dict[str, Table]:
    """`device_sites`: each device's site, for the devices offline now of `period.sites`
    (a device it does not know is shown to accounts of every site alone)."""
    tables: dict[str, Table] = {}

    # one pass over the period's incidents: cheaper than a query a table
    kinds: Counter[str] = Counter()
    buildings: Counter[str] = Counter()
    utc_hours: Counter[str] = Counter()
    to_ack: list[float] = []
    to_resolve: list[float] = []
    drills: list[dict[str, Any]] = []
    leaks: dict[int, str] = {}
    site_of: dict[int, str] = {}
    by_site: dict[str, _Site] = {}
    for row in db.incidents(conn, period):
        number, playbook, building, opened, _, _, drill, ack, resolve, site = row
        site_of[number] = site
        here = by_site.setdefault(site, _Site())
        if drill:
            drills.append(
                dict(zip(("id", "playbook", "building", "opened_at", "acknowledged_at",
                          "resolved_at", "drill", "site"), (*row[:7], site), strict=True))
            )  # fmt: skip
            here.drills += 1
            here.drills_in_time += drill_in_time(drills[-1], ack_targets.get(playbook)) is True
            continue
        here.incidents += 1
        if ack is not None:
            here.to_ack.append(ack)
        if resolve is not None:
            here.to_resolve.append(resolve)
        kinds[playbook] += 1
        buildings[building] += 1
        utc_hours[opened[:13]] += 1
        if playbook in leak_playbooks:
            leaks[number] = opened
        if ack is not None:
            to_ack.append(ack)
        if resolve is not None:
            to_resolve.append(resolve)
    tables["by_kind"] = Table(
        "by_kind", ["playbook", "incidents"], [list(kv) for kv in kinds.most_common()], (0, 1)
    )
    tables["by_building"] = Table(
        "by_building",
        ["building", "incidents"],
        [list(kv) for kv in buildings.most_common()],
        (0, 1),
    )
    # counted by UTC hour, then moved to the site's time (exact for whole-hour zones)
    months: Counter[str] = Counter()
    hours: Counter[int] = Counter()
    for bucket, n in utc_hours.items():
        local = datetime.fromisoformat(f"{bucket}:00:00+00:00").astimezone(tz)
        months[local.strftime("%Y-%m")] += n
        hours[local.hour] += n
    tables["by_month"] = Table(
        "by_month", ["month", "incidents"], [[m, months[m]] for m in sorted(months)], (0, 1)
    )
    tables["by_hour"] = Table(
        "by_hour", ["hour", "incidents"], [[f"{h:02}", hours.get(h, 0)] for h in range(24)], (0, 1)
    )
    tables["response"] = Table(
        "response",
        ["measure", "incidents", "mean_min", "p90_min"],
        [
            [
                "acknowledge",
                len(to_ack),
                _minutes(sum(to_ack) / len(to_ack) if to_ack else None),
                _minutes(_p90(to_ack)),
            ],
            [
                "resolve",
                len(to_resolve),
                _minutes(sum(to_resolve) / len(to_resolve) if to_resolve else None),
                _minutes(_p90(to_resolve)),
            ],
        ],
    )

    reached = 0
    if leaks:
        first_on_site = db.first_on_site(conn, min(leaks), max(leaks))
        for number, opened in leaks.items():
            on_site = first_on_site.get(number)
            in_time = (
                on_site is not None
                and datetime.fromisoformat(on_site) - datetime.fromisoformat(opened)
                <= ON_SITE_WITHIN
            )
            reached += in_time
            here = by_site[site_of[number]]
            here.leaks += 1
            here.reached += in_time
    tables["leaks_on_site"] = Table(
        "leaks_on_site",
        ["leaks", "on_site_within_30_min", "share_pct"],
        [[len(leaks), reached, f"{100 * reached / len(leaks):.0f}" if leaks else ""]],
    )

    tables["drills"] = Table(
        "drills",
        [
            "incident",
            "opened",
            "playbook",
            "building",
            "ack_min",
            "target_min",
            "in_time",
            "resolve_min",
        ],
        [
            [
                d["id"],
                datetime.fromisoformat(d["opened_at"]).astimezone(tz).strftime("%Y-%m-%d %H:%M"),
                d["playbook"],
                d["building"],
                _minutes(took_s(d["opened_at"], d["acknowledged_at"])),
                _minutes(ack_targets.get(d["playbook"])),
                {True: "✓", False: "✗", None: "—"}[
                    drill_in_time(d, ack_targets.get(d["playbook"]))
                ],
                _minutes(took_s(d["opened_at"], d["resolved_at"])),
            ]
            for d in drills
        ],
    )

    tables["messages"] = Table(
        "messages",
        ["channel", "status", "messages"],
        db.messages(conn, period),
    )
    for site, failed in db.failed_by_site(conn, period):
        by_site.setdefault(site, _Site()).failed = failed
    tables["by_site"] = Table(
        "by_site",
        [
            *("site", "incidents", "ack_mean_min", "ack_p90_min", "resolve_mean_min"),
            *("leaks", "leaks_on_site_30_min", "drills", "drills_in_time", "messages_failed"),
        ],
        [[site, *by_site[site].row()] for site in sorted(by_site)],
        (0, 1),
    )

    tables["noisy_devices"] = Table(
        "noisy_devices", ["device", "events"], db.noisy_devices(conn, period), (0, 1)
    )
    tables["offline_now"] = Table(
        "offline_now",
        ["device", "offline_since"],
        [
            [d, datetime.fromisoformat(s).astimezone(tz).strftime("%Y-%m-%d %H:%M")]
            for d, _, s in devices_db.active(conn, "sensor.offline")
            if period.sites is None or (device_sites or {}).get(d) in period.sites
        ],
    )
    return tables


@dataclass(slots=True)
class _Site:
    """One site's figures, for the sites side by side."""

    incidents: int = 0
    to_ack: list[float] = field(default_factory=list)
    to_resolve: list[float] = field(default_factory=list)
    leaks: int = 0
    reached: int = 0
    drills: int = 0
    drills_in_time: int = 0
    failed: int = 0

    def row(self) -> list[Any]:
        return [
            self.incidents,
            _minutes(sum(self.to_ack) / len(self.to_ack) if self.to_ack else None),
            _minutes(_p90(self.to_ack)),
            _minutes(sum(self.to_resolve) / len(self.to_resolve) if self.to_resolve else None),
            self.leaks,
            self.reached,
            self.drills,
            self.drills_in_time,
            self.failed,
        ]


def month_of(now: datetime, tz: tzinfo) -> Period:
    """The current month in the site's time, the page's default period."""
    local = now.astimezone(tz)
    start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (start + timedelta(days=32)).replace(day=1)
    return Period(start.astimezone(UTC), end.astimezone(UTC))
