"""Health and metrics: what a monitoring system (or `alertd status`) asks the running
daemon. Each part says ok, degraded (alerts still go out, something needs a person),
starting (not yet listening: until every MQTT subscription is confirmed, a message
published is lost, so a tool that waits for health must not go on) or failing (alerts
may not go out). On PostgreSQL a standby answers too (alertd/cluster.py), and `/active`
says which instance a load balancer sends Twilio's callbacks to."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily

from alertd.cluster import SERVICE, Membership
from alertd.events import LIFE_SAFETY
from alertd.outbox.providers import Providers
from alertd.outbox.totals import EVENTS
from alertd.playbooks.audit import recipients
from alertd.sites import has_staff
from alertd.store import incidents as incidents_db
from alertd.store import messages as messages_db

if TYPE_CHECKING:
    from alertd.daemon import Daemon


#: the service taken over this often within an hour (not handed over) is a lease that keeps
#: moving (an instance paused again and again, a network that keeps cutting): degraded
MOVES_PER_HOUR = 3

#: a message's statuses, each exported (at 0 too) for every channel
MESSAGE_STATUSES = ("pending", "sending", "sent", "delivered", "failed", "expired")


@dataclass(frozen=True, slots=True)
class Part:
    name: str
    state: str  # ok | degraded | failing
    detail: str = ""
    #: the sites it concerns (none: the whole service)
    sites: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "state": self.state, "detail": self.detail}
        return {**out, "sites": list(self.sites)} if self.sites else out


def site_states(found: list[Part], sites: list[str]) -> dict[str, str]:
    """Each site's state: the worst of its own parts and the whole service's."""
    return {
        site: summary([p for p in found if not p.sites or site in p.sites])[0] for site in sites
    }


def life_safety_oncall_roles(daemon: Daemon) -> set[str]:
    engine = daemon.incidents.engine
    return {
        who.oncall
        for pb in engine.playbooks.values()
        if any(kind in LIFE_SAFETY for kind in pb.match.kinds)
        for _, who in recipients(pb)
        if who.oncall is not None
    }


def parts(daemon: Daemon, now: datetime, fallbacks: tuple[int, str] = (0, "")) -> list[Part]:
    out = [
        Part(
            "store",
            "failing" if daemon.ingest.store_error else "ok",
            daemon.ingest.store_error and f"not writable: {daemon.ingest.store_error}",
        ),
        *_mqtt(daemon),
    ]
    for link in daemon.panels.links:
        up = link.connected.is_set()
        panel = daemon.config.panels.get(link.name)
        where = (panel.place.site,) if daemon.sites.several and panel and panel.place.site else ()
        out.append(
            Part(f"panel {link.name}", "ok" if up else "degraded", "" if up else "link down", where)
        )
    for receiver in daemon.panels.receivers:
        if receiver.unknown_accounts:
            accounts = ", ".join(sorted(receiver.unknown_accounts))
            out.append(
                Part(
                    f"receiver {receiver.name} accounts",
                    "degraded",
                    f"frames from accounts not configured: {accounts} (accepted: no place, no key)",
                )
            )
        listening = bool(receiver.tcp_port or receiver.udp_port)
        out.append(
            Part(
                f"receiver {receiver.name}",
                "ok" if listening else "failing",
                "" if listening else "not listening",
            )
        )
    for lane in daemon.dispatcher.lane_states():
        state = {"ok": "ok", "paused": "ok", "stopped": "failing"}[lane.state]
        out.append(Part(f"lane {lane.channel}", state, lane.reason))
    sms = daemon.dispatcher.sinks.get("sms")
    if isinstance(sms, Providers):
        states = sms.states()
        every = all(state == "stopped" for _, state, _ in states)
        for name, state, detail in states:
            worst = "failing" if every else "degraded"
            out.append(Part(f"sms provider {name}", worst if state == "stopped" else "ok", detail))
    staff = daemon.dispatcher.staff
    if staff is None and has_staff(daemon.config):
        out.append(Part("staff", "failing", "the staff file(s) could not be loaded"))
    elif staff is not None:
        for site in daemon.sites:
            at = f" at {site.id}" if daemon.sites.several else ""
            for role in sorted(life_safety_oncall_roles(daemon)):
                if staff.on_call(role, now, site.id) is None:
                    instead = (
                        "everyone with the role"
                        if staff.with_role(role, site.id)
                        else f"nobody holds it: the fallback role {site.fallback_role!r}"
                    )
                    out.append(
                        Part(
                            f"on call {role}{at}",
                            "degraded",
                            f"nobody on call now for {role!r}{at}: life-safety steps go to "
                            f"{instead}",
                            (site.id,) if daemon.sites.several else (),
                        )
                    )
    if daemon.service is not None:
        out.append(cluster_part(daemon.service))
    for problem in daemon.problems:
        out.append(Part("configuration", "degraded", problem))
    if fallbacks[0]:
        out.append(
            Part(
                "recipients",
                "degraded",
                f"{fallbacks[0]} life-safety staff step(s) in the last day found nobody and "
                f"went to the fallback role; latest: {fallbacks[1]}",
            )
        )
    return out


def cluster_part(member: Membership) -> Part:
    """This instance's place among those sharing the PostgreSQL store."""
    if member.error:
        return Part("cluster", "failing", f"cannot reach the store: {member.error}")
    moved = len(member.moves)
    if moved >= MOVES_PER_HOUR:
        detail = f"the service was taken over {moved} times in the last hour (alertd cluster)"
        return Part("cluster", "degraded", detail)
    others = [i for i in member.live if i != member.me]
    if SERVICE in member.held:
        if not others:
            detail = "no instance stands by: if this one stops, nobody takes the service over"
            return Part("cluster", "degraded", detail)
        epoch = member.held[SERVICE]
        return Part("cluster", "ok", f"active at epoch {epoch}; standing by: {', '.join(others)}")
    lease = next((x for x in member.leases if x.site == SERVICE), None)
    if lease is None or not lease.held:
        return Part("cluster", "degraded", "nobody holds the service: a standby takes it over")
    detail = f"standing by: {lease.owner} is active (its lease has {lease.left_s:.1f} s left)"
    return Part("cluster", "ok", detail)


def standby_routes(app: web.Application, member: Membership) -> None:
    """A standby's /healthz (503 "standby" when all is well: a load balancer sends
    nothing here) and /active."""

    async def healthz(_: web.Request) -> web.Response:
        part = cluster_part(member)
        status = "standby" if part.state == "ok" else part.state
        body = {
            "status": status,
            "instance": member.me,
            "problems": [] if part.state == "ok" else [f"{part.name}: {part.detail}"],
            "parts": [part.as_dict()],
        }
        return web.json_response(body, status=503)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(StandbyMetrics(member))

    async def scrape(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), content_type="text/plain")

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", scrape)
    app.router.add_get("/active", _active(lambda: member.me, lambda: SERVICE in member.held))


def _active(
    me: Callable[[], str], holds: Callable[[], bool]
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """/active: 200 on the instance that holds the service (one box always does)."""

    async def active(_: web.Request) -> web.Response:
        held = bool(holds())
        return web.json_response({"instance": me(), "active": held}, status=200 if held else 503)

    return active


def _mqtt(daemon: Daemon) -> list[Part]:
    """A broker each. With one, it is the service's input: down is failing. With a
    broker per site, one down leaves the others' alarms going out: the sites it serves
    are degraded, and named."""
    several = len(daemon.links) > 1
    out = []
    for link in daemon.links:
        mqtt = link.mqtt
        served = ", ".join(link.sites)
        name = f"mqtt {link.name} ({served})" if several else "mqtt"
        if mqtt.connected.is_set():
            out.append(Part(name, "ok", "", link.sites if several else ()))
        elif not mqtt.ready_once:
            detail = "connecting and subscribing to the broker"
            out.append(Part(name, "starting", detail, link.sites if several else ()))
        elif several:
            detail = f"not connected to the broker: {served} unheard"
            out.append(Part(name, "degraded", detail, link.sites))
        else:
            out.append(Part(name, "failing", "not connected to the broker"))
    return out


def summary(found: list[Part]) -> tuple[str, int]:
    states = {p.state for p in found}
    if "failing" in states:
        return "failing", 503
    if "starting" in states:
        return "starting", 503
    if "degraded" in states:
        return "degraded", 503
    return "ok", 200


class Metrics:
    """A prometheus collector reading the daemon's counters at scrape time."""

    def __init__(self, daemon: Daemon) -> None:
        self._daemon = daemon
        self.outbox: list[tuple[str, str, int]] = []

    def collect(self) -> Iterator[Any]:
        d = self._daemon
        counts = d.ingest.counts
        yield CounterMetricFamily(
            "alertd_events_committed", "Events committed to the store", value=counts["events"]
        )
        yield CounterMetricFamily(
            "alertd_dead_letters", "Messages kept as dead letters", value=counts["dead_letters"]
        )
        yield CounterMetricFamily(
            "alertd_ingest_dropped", "Routine reports dropped (queue full)", value=counts["dropped"]
        )
        yield GaugeMetricFamily(
            "alertd_ingest_queue_depth", "Reports waiting for a commit", value=d.ingest.depth()
        )
        yield SummaryMetricFamily(
            "alertd_commit_seconds",
            "Ingest commits and their time",
            count_value=counts["commits"],
            sum_value=d.ingest.commit_seconds,
        )
        if len(d.sites) == 1:
            yield GaugeMetricFamily(
                "alertd_mqtt_connected", "1 while connected", value=int(d.mqtt.connected.is_set())
            )
        else:
            connected = GaugeMetricFamily(
                "alertd_mqtt_connected", "1 while the site's broker is connected", labels=["site"]
            )
            for broker in d.links:
                for site in broker.sites:
                    connected.add_metric([site], int(broker.mqtt.connected.is_set()))
            yield connected
        links = GaugeMetricFamily(
            "alertd_panel_link_up", "1 while a panel link is up", labels=["panel", "site"]
        )
        for link in d.panels.links:
            panel = d.config.panels.get(link.name)
            site = (panel.place.site if panel else "") or (d.sites.only.id if d.sites.only else "")
            links.add_metric([link.name, site], int(link.connected.is_set()))
        yield links
        messages = GaugeMetricFamily(
            "alertd_outbox_messages", "Messages by channel and status", labels=["channel", "status"]
        )
        channels = sorted({*d.dispatcher.lanes, *(c for c, _, _ in self.outbox)})
        now = {(c, s): n for c, s, n in self.outbox}
        for channel in channels:  # every status, at 0 too: "no data" is not "none"
            for status in MESSAGE_STATUSES:
                messages.add_metric([channel, status], now.get((channel, status), 0))
        yield messages
        totals = d.dispatcher.totals
        for event in EVENTS:
            counter = CounterMetricFamily(
                f"alertd_messages_{event}",
                f"Messages {event} since start, by channel",
                labels=["channel"],
            )
            for channel in channels:
                counter.add_metric([channel], totals.of(channel, event))
            yield counter
        lanes = GaugeMetricFamily(
            "alertd_delivery_lane_up", "0 while a lane is stopped", labels=["channel"]
        )
        for lane in d.dispatcher.lane_states():
            lanes.add_metric([lane.channel], int(lane.state != "stopped"))
        yield lanes
        if d.service is not None:
            yield from cluster_metrics(d.service)


class StandbyMetrics:
    """A standby's collector: its place in the set, nothing else runs there."""

    def __init__(self, member: Membership) -> None:
        self._member = member

    def collect(self) -> Iterator[Any]:
        yield from cluster_metrics(self._member)


def cluster_metrics(member: Membership) -> Iterator[Any]:
    """This instance's place among those sharing the PostgreSQL store (each instance is
    scraped on its own: the instance label says which answered)."""
    others = len([i for i in member.live if i != member.me])
    labels = ["instance"]
    for name, what, value in (
        ("alertd_cluster_active", "1 while this instance holds the service",
         SERVICE in member.held),
        ("alertd_cluster_standbys", "Other instances heard from", others),
        ("alertd_cluster_takeovers_last_hour", "Takeovers of a lease seen in the last hour",
         len(member.moves)),
        ("alertd_cluster_store_reachable", "0 while the last lease round failed",
         not member.error),
    ):  # fmt: skip
        gauge = GaugeMetricFamily(name, what, labels=labels)
        gauge.add_metric([member.me], int(value))
        yield gauge


def routes(app: web.Application, daemon: Daemon) -> None:
    metrics = Metrics(daemon)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics)

    async def healthz(_: web.Request) -> web.Response:
        now = daemon.clock.now()
        try:
            fallbacks = await daemon.look(incidents_db.fallbacks_since, now - timedelta(days=1))
        except Exception:  # health answers whatever the store does (its own part says)
            fallbacks = (0, "")
        found = parts(daemon, now, fallbacks)
        status, code = summary(found)
        body = {
            "status": status,
            "problems": [f"{p.name}: {p.detail}" for p in found if p.state != "ok"],
            "parts": [p.as_dict() for p in found],
            "sites": site_states(found, daemon.sites.ids),
        }
        return web.json_response(body, status=code)

    async def scrape(_: web.Request) -> web.Response:
        try:
            metrics.outbox = await daemon.look(messages_db.totals_by_channel)
        except Exception:
            metrics.outbox = []
        return web.Response(body=generate_latest(registry), content_type="text/plain")

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", scrape)
    app.router.add_get(
        "/active",
        _active(
            lambda: daemon.service.me if daemon.service else "this box",
            lambda: daemon.service is None or SERVICE in daemon.service.held,
        ),
    )
