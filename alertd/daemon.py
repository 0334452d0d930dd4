"""Wiring: configuration, devices, store, ingest and sources, run until told to stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar, cast

from aiohttp import web

from alertd import memory
from alertd.clock import Clock, SystemClock
from alertd.cluster import SERVICE, Membership, serve
from alertd.config import Config, HttpConfig, MqttConfig, panel_problems
from alertd.devices import Device, load_site_devices
from alertd.directory.staff import Staff
from alertd.engine.engine import Engine
from alertd.engine.run import Locale
from alertd.events import Kind, Location, Observation
from alertd.incidents.service import IncidentService
from alertd.ingest.pipeline import Ingest
from alertd.ingest.report import Report
from alertd.links import Links, link_key
from alertd.outbox.broadcast import PaSink, Publish, WebhookSink
from alertd.outbox.dispatcher import Dispatcher
from alertd.outbox.email import EmailSink
from alertd.outbox.expand import Local
from alertd.outbox.inbound import Inbound
from alertd.outbox.pa_ack import PaAcks, record_pa_ack
from alertd.outbox.providers import Providers
from alertd.outbox.sink import ConsoleSink, Message, Sink
from alertd.playbooks.loader import Playbooks, load_playbooks
from alertd.playbooks.schema import Playbook
from alertd.problems import InvalidInput, Problem
from alertd.sites import (
    Sites,
    brokers,
    has_staff,
    load_company_staff,
    site_problems,
    sites_of,
)
from alertd.store import SqliteStore, Writer
from alertd.store.directory import claim_residents
from alertd.store.lock import InstanceLock
from integrations.mqtt.client import Incoming, MqttConnection
from integrations.mqtt.profiles import build_profiles
from integrations.mqtt.router import Router
from integrations.mqtt.source import MqttSource
from integrations.panels.setup import build as build_panels

log = logging.getLogger(__name__)
T = TypeVar("T")

DRAIN_TIMEOUT_S = 10.0
#: PostgreSQL: the whole shutdown at most (a silent store waits for nothing longer)
SHUTDOWN_S = 15.0
#: PostgreSQL: health's and metrics' reads at most
LOOK_S = 2.0
#: a site's broker down this long is told to its duty staff (a restart of the broker
#: takes seconds; an outage is worth a text)
BROKER_TELL_S = 30.0


def load_router(
    config: Config, in_force: list[Device] | None = None
) -> tuple[Router, list[Problem]]:
    """Profiles and devices as the daemon would use them, with every problem found.
    `in_force` (a reload): a site whose devices file is broken keeps these."""
    profiles = build_profiles(config.profiles, config.site.tz)
    devices, problems = load_site_devices(sites_of(config), profiles, in_force)
    router = Router(devices, profiles)
    return router, problems + router.problems


@dataclass
class BrokerLink:
    """A broker, the sites it serves, and the connection reading their devices."""

    name: str
    sites: tuple[str, ...]
    mqtt: MqttConnection
    source: MqttSource
    #: alertd's own subscriptions there (the PA controller's confirmations)
    own_topics: list[str]
    down_since: datetime | None = None
    told: bool = False


@dataclass
class Daemon:
    config: Config
    clock: Clock = field(default_factory=SystemClock)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    failed: bool = False
    #: what was wrong with the configuration at start (shown in health)
    problems: list[str] = field(default_factory=list)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _side_tasks: set[asyncio.Future[None]] = field(default_factory=set)
    #: the duty desk being told, before this instance stops, that the store is out of reach
    _farewell: asyncio.Future[None] | None = None
    #: one daemon per SQLite store; on PostgreSQL, the service lease
    lock: InstanceLock | None = None
    service: Membership | None = None

    async def start(self) -> None:
        # before anything else: a second daemon changes nothing (on PostgreSQL it stands
        # by, and takes over when the active one stops answering)
        url = self.config.storage.secret_url
        if url is None:
            self.lock = InstanceLock(self.config.storage.path)
            self.lock.acquire()
            listening = _bind(self.config.http)  # a taken port is said before anything starts
        else:
            member = Membership(
                url,
                [SERVICE],
                lease_s=self.config.storage.lease_s,
                on_loss=self._lost,
            )
            if not await self._stand_by(member):
                return  # told to stop while standing by: nothing was started
            self.service = member
            listening = _bind(self.config.http)  # the standby's closed with its server
        router, problems = load_router(self.config)
        problems += panel_problems(self.config, "config") + site_problems(self.config, "config")
        for problem in problems:
            log.warning("%s", problem)
        self.problems = [str(p) for p in problems]
        self.sites = sites_of(self.config)
        self.panels = build_panels(
            self.config.panels,
            self.config.receivers,
            self.config.printer_formats,
            site=self.sites.only.id if self.sites.only else "",
            tz=self.config.site.tz,
            submit=lambda item: self.ingest.submit(item),
            clock=self.clock,
        )
        self.writer = Writer(
            self.config.storage.path,
            synchronous=self.config.storage.synchronous,
            url=url,
        )
        if self.service is not None:  # every write transaction holds the service lease
            self.writer.fenced_by((SERVICE, self.service.me, self.service.held[SERVICE]))
        await self.writer.open()
        if self.sites.only is not None and self.writer.store is not None:
            claimed = await self.writer.call(
                claim_residents, self.writer.store.conn, self.sites.only.id
            )
            if claimed:
                log.info("%d residents stored before sites: site %s's", claimed, self.sites.only.id)
        self.ingest = await Ingest.open(
            self.writer, [*router.devices, *self.panels.devices], self.clock, self.config.ingest
        )
        self._devices = router.devices
        pa_acks = PaAcks(self.config.pa.ack_topic) if self.config.pa.ack_topic else None
        self._own_topics = [pa_acks.filter] if pa_acks else []
        groups = brokers(self.sites)
        self.links = [  # each broker carries its sites' PA controllers too
            self._link(mqtt, sites, router if len(groups) == 1 else router.only(sites), pa_acks)
            for mqtt, sites in groups
        ]
        #: the first broker's connection (with one broker: the broker)
        self.mqtt, self.source = self.links[0].mqtt, self.links[0].source
        playbooks = load_playbooks(self.config.playbooks) if self.config.playbooks else Playbooks()
        overrides, by_site = site_playbooks(self.config)
        for problem in [*playbooks.problems, *(p for ps in by_site.values() for p in ps)]:
            log.error("playbook disabled: %s", problem)
            self.problems.append(f"playbook disabled: {problem}")
        staff = _staff(self.config)
        self.incidents = IncidentService(
            self.writer, make_engine(self.config, playbooks.enabled, overrides), self.clock, staff
        )
        self.dispatcher = Dispatcher(
            self.writer,
            _sinks(
                self.config,
                self.mqtt.publish,
                {site: link.mqtt.publish for link in self.links for site in link.sites},
                self.clock,
            ),
            self.clock,
            self.config.delivery,
            staff,
            {s.id: Local(s.unit_format, s.fallback_role) for s in self.sites},
        )
        if self.writer.store is not None:  # staff texts link to the incident's phone page
            key = await self.writer.call(link_key, self.writer.store.conn)
            self.dispatcher.links = Links(key, self.config.console.public_url)
        await self.dispatcher.start()
        self.incidents.delivery = self.dispatcher
        #: receipts, replies and key presses, from every provider
        self.inbound = Inbound(self.writer, staff, self.clock, self.dispatcher.totals)
        catch_up = await self.incidents.open()
        self.ingest.decider = self.incidents
        self.incidents.make_event = self._declared
        for receiver in self.panels.receivers:
            await receiver.start()
        self._ingest_task = asyncio.create_task(self.ingest.run(), name="ingest")
        self._incidents_task = asyncio.create_task(
            self.incidents.catch_up(catch_up), name="catch-up"
        )
        self._http: web.AppRunner | None = None
        if self.config.http is not None and listening is not None:
            await self._serve_http(self.config.http, listening)
        self._dispatcher_task = asyncio.create_task(self.dispatcher.run(), name="dispatcher")
        self._tasks = [
            *(
                asyncio.create_task(link.mqtt.run(), name=f"mqtt {link.name}")
                for link in self.links
            ),
            asyncio.create_task(self._ticker(), name="ticker"),
            *(
                asyncio.create_task(link.run(), name=f"panel {link.name}")
                for link in self.panels.links
            ),
            *([asyncio.create_task(self.service.run(), name="lease")] if self.service else []),
            *self._pulls(),
        ]
        for task in (self._ingest_task, self._incidents_task, self._dispatcher_task, *self._tasks):
            task.add_done_callback(self._task_done)
        memory.settle()
        log.info(
            "alertd running: %d devices, %d subscriptions, store %s",
            len(router.devices),
            len(router.subscriptions),
            self.config.storage.where,
        )

    def _pulls(self) -> list[asyncio.Task[None]]:
        """Providers whose receipts and replies are pulled, not pushed: Tencent."""
        sms = self.dispatcher.sinks.get("sms")
        if not isinstance(sms, Providers) or self.config.tencent is None:
            return []
        from integrations.tencent.pull import TencentPull
        from integrations.tencent.sink import TencentSink

        tencent = sms.sinks.get("tencent")
        if not isinstance(tencent, TencentSink):
            return []
        config = self.config.tencent
        pull = TencentPull(tencent.client, config.sdk_app_id, self.inbound, config.pull_s)
        return [asyncio.create_task(pull.run(), name="tencent pull")]

    def _link(
        self, config: MqttConfig, sites: tuple[str, ...], router: Router, pa_acks: PaAcks | None
    ) -> BrokerLink:
        """One broker's connection and what reads its messages."""
        own = self._own_topics if pa_acks is not None else []

        def on_message(msg: Incoming) -> None:
            if pa_acks is not None and pa_acks.matches(msg.topic):
                self._spawn(self._pa_ack(pa_acks, msg, mqtt, sites))
            else:
                source.handle(msg)

        mqtt = MqttConnection(config, [*router.subscriptions, *own], on_message)
        source = MqttSource(
            router,
            self.ingest.submit,
            mqtt.ack,
            self.clock,
            client_id=config.client_id,
            max_payload_bytes=config.max_payload_bytes,
            site=sites[0] if len(sites) == 1 else "",
        )
        return BrokerLink(f"{config.host}:{config.port}", sites, mqtt, source, own)

    async def reload(self) -> None:
        """SIGHUP: playbooks, staff and devices read again. Each file is taken whole or
        not at all: a broken one keeps the one in force (a site's devices file or team
        file: that site's alone), and says why (log, health)."""
        problems: list[str] = []
        books = load_playbooks(self.config.playbooks) if self.config.playbooks else Playbooks()
        overrides, by_site = site_playbooks(self.config)
        for site, broken in by_site.items():  # a site's broken folder: its own as they were
            problems += [f"playbooks of {site} not reloaded: {p}" for p in broken]
            overrides[site] = self.incidents.engine.overrides.get(site, {})
        if books.problems:
            problems += [f"playbooks not reloaded: {p}" for p in books.problems]
        else:
            self.incidents.engine = make_engine(self.config, books.enabled, overrides)
        if has_staff(self.config):
            try:  # a broken site team's file keeps that team as it was
                staff = load_company_staff(self.config, self.dispatcher.staff)
            except InvalidInput as exc:
                problems += [f"staff file not reloaded: {p}" for p in exc.problems]
            else:
                problems += [f"staff file not reloaded: {p}" for p in staff.problems]
                self.dispatcher.staff = self.incidents.staff = self.inbound.staff = staff
        # a broken devices file holds back its own sites' devices, not the others'
        router, device_problems = load_router(self.config, self._devices)
        problems += [f"devices not reloaded: {p}" for p in device_problems]
        self._devices = router.devices
        self.ingest.replace_devices([*router.devices, *self.panels.devices])
        for link in self.links:
            mine = router if len(self.links) == 1 else router.only(link.sites)
            link.source.router = mine
            link.mqtt.resubscribe([*mine.subscriptions, *link.own_topics])
        for problem in problems:
            log.error("reload: %s (the one in force stays)", problem)
        self.problems = problems
        log.info(
            "reload: %s",
            "done" if not problems else f"{len(problems)} problem(s), see above",
        )

    def _lost(self, what: str) -> None:
        """The service lease is gone (paused past it, the store unreachable): another
        instance acts now, so this one stops at once (its writes are fenced meanwhile).
        When the store could not be reached, the duty desk is texted first, straight
        through the SMS sink: every instance may be as cut off as this one."""
        if self.stop.is_set():
            return
        log.critical("lost the service lease (%s): stopping; another instance acts", what)
        self.failed = True
        if self.service is not None and self.service.error:
            self._farewell = asyncio.ensure_future(self._tell_staff_about_the_store(True))
        self.stop.set()

    async def _let_go(self) -> None:
        """The store's lock, or the service lease handed to a standby (so it takes over
        at once rather than after the lease runs out)."""
        if self.lock is not None:
            self.lock.release()
        if self.service is not None:
            try:
                await self.service.stop()
            except Exception as exc:  # it runs out by itself
                log.error("could not hand the service over: %s", exc)
                await self.service.close()

    async def look(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(conn, *args)` for health and metrics: a reader of its own on SQLite (the
        writer is not held up), the writer's connection, as routine work, on PostgreSQL."""
        if self.service is None:

            def read() -> T:
                conn = SqliteStore.reader(self.config.storage.path)
                try:
                    return fn(conn, *args)
                finally:
                    conn.close()

            return await asyncio.to_thread(read)
        # bounded: health answers even while the store does not (the writer waits on it)
        call = self.writer.call(fn, self.writer.store.conn, *args)
        return cast(T, await asyncio.wait_for(call, LOOK_S))

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.critical(
                "%s stopped unexpectedly; shutting down so a supervisor restarts alertd",
                task.get_name(),
                exc_info=task.exception(),
            )
            self.failed = True
            self.stop.set()

    async def _stand_by(self, member: Membership) -> bool:
        """Wait for the service lease (True once held), answering /healthz and /active
        meanwhile, as a standby (when there is an `http:` section)."""
        runner = None
        listening = _bind(self.config.http)
        if listening is not None:
            from alertd import health

            app = web.Application(client_max_size=16 * 1024)
            health.standby_routes(app, member)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.SockSite(runner, listening).start()
        try:
            return await serve(member, self.stop)
        finally:
            if runner is not None:
                await runner.cleanup()

    async def _serve_http(self, http: HttpConfig, listening: socket.socket) -> None:
        """/healthz and /metrics; Twilio's callbacks when Twilio is configured."""
        from alertd import health

        app = web.Application(client_max_size=16 * 1024)
        health.routes(app, self)
        if self.config.twilio is not None:
            from integrations.twilio.callbacks import Callbacks

            twilio = self.config.twilio.auth_token.get_secret_value()
            Callbacks(self.inbound, twilio, http.public_url).app(app)
        aliyun = self.config.aliyun
        if aliyun is not None and aliyun.push_token is not None:
            from integrations.aliyun.push import AliyunPush

            AliyunPush(self.inbound, aliyun.push_token.get_secret_value()).app(app)
        self._http = web.AppRunner(app, access_log=None)
        await self._http.setup()
        await web.SockSite(self._http, listening).start()
        log.info(
            "health, metrics%s and callbacks on http://%s:%d (public URL %s)",
            "" if self.config.twilio else " (no Twilio: no callbacks)",
            http.host,
            http.port,
            http.public_url,
        )

    async def _pa_ack(
        self, acks: PaAcks, msg: Incoming, mqtt: MqttConnection, sites: tuple[str, ...]
    ) -> None:
        """The broadcast controller confirmed: put it on the incident (of the sites its
        broker serves), then ack MQTT."""
        building = acks.building(msg.topic)
        text = msg.payload.decode("utf-8", "replace")[:500]
        await self.writer.call(
            record_pa_ack,
            self.writer.store.conn if self.writer.store else None,
            building,
            text,
            self.clock.now(),
            sites if len(self.links) > 1 else (),
        )
        mqtt.ack(msg.mid, msg.connection)

    async def _ticker(self) -> None:
        store_told = False
        tick_failed = ""
        while True:
            await asyncio.sleep(self.config.ingest.tick_s)
            self.ingest.tick()
            if len(self.links) > 1:
                self._watch_brokers()
            for receiver in self.panels.receivers:
                receiver.flush_rejects()
            failing = bool(self.ingest.store_error)
            if failing != store_told:
                store_told = failing
                self._spawn(self._tell_staff_about_the_store(failing))
            memory.sweep()
            if failing:
                continue  # decisions could not be stored either; they wait with the events
            try:
                await self.incidents.tick()
                tick_failed = ""
            except Exception as exc:  # the store failed mid-tick: what was not stored waits
                if repr(exc) != tick_failed:  # once per reason, not at every tick
                    log.exception("timers and commands wait: the tick failed")
                tick_failed = repr(exc)

    def _spawn(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    def _watch_brokers(self) -> None:
        """A site's broker down for BROKER_TELL_S: the duty staff of the sites it serves
        and head office (the company's people with the role at every site) are told,
        once, and told again when it is back. The other sites go on as before."""
        now = self.clock.now()
        for link in self.links:
            down = link.mqtt.ready_once and not link.mqtt.connected.is_set()
            if not down:
                link.down_since = None
                if link.told:
                    link.told = False
                    self._spawn(self._tell_sites_about_their_broker(link, False))
                continue
            link.down_since = link.down_since or now
            if not link.told and (now - link.down_since).total_seconds() >= BROKER_TELL_S:
                link.told = True
                self._spawn(self._tell_sites_about_their_broker(link, True))

    async def _tell_sites_about_their_broker(self, link: BrokerLink, down: bool) -> None:
        staff = self.dispatcher.staff
        if staff is None:
            log.error("broker %s down and no staff to tell", link.name)
            return
        names: dict[str, None] = {}
        for site in link.sites:
            role = self.sites.find(site).fallback_role
            names.update(dict.fromkeys(staff.with_role(role, site)))
        served = ", ".join(self.sites.find(s).name for s in link.sites)
        if down:
            text = {
                "zh": f"【alertd 故障】{served} 的 MQTT 服务器 {link.name} 已断开，"
                "该小区的探测器报警无法收到，请立即检查。其他小区正常。",
                "en": f"[alertd DEGRADED] the MQTT broker {link.name} of {served} is down: "
                "its detectors' alarms are not heard. Check it now; the other sites work.",
            }
        else:
            text = {
                "zh": f"【alertd 恢复】{served} 的 MQTT 服务器 {link.name} 已恢复连接。",
                "en": f"[alertd OK] the MQTT broker {link.name} of {served} is connected again.",
            }
        await self._tell(
            staff, list(names), text, f"broker {link.name} is {'down' if down else 'back'}"
        )

    async def _tell_staff_about_the_store(self, failing: bool) -> None:
        """The store cannot be written: the outbox is in it, so the duty desk is texted
        straight through the SMS sink (and told again when it works)."""
        staff = self.dispatcher.staff
        if staff is None:
            log.error("the store cannot be written and there is no staff to tell")
            return
        role = self.config.delivery.fallback_role
        names = staff.with_role(role) or list(staff.people)
        if failing and self.service is not None:
            text = {
                "zh": "【alertd 故障】无法连接 PostgreSQL 数据库。新的报警正在等待，"
                "无法记录和通知，请立即检查数据库服务器和网络。",
                "en": "[alertd FAILING] it cannot reach its PostgreSQL store. New alarms wait "
                "and cannot be recorded or sent: check the database server and the network now.",
            }
        elif failing:
            text = {
                "zh": "【alertd 故障】数据库无法写入（磁盘已满或只读？）。新的报警正在等待，"
                "无法记录和通知，请立即检查服务器。",
                "en": "[alertd FAILING] its store cannot be written (disk full or read-only?). New "
                "alarms wait and cannot be recorded or sent: check the server now.",
            }
        else:
            text = {
                "zh": "【alertd 恢复】数据库已可写入，等待的报警正在处理。",
                "en": "[alertd OK] its store can be written again; waiting alarms are being "
                "handled.",
            }
        what = "the store " + ("cannot be written" if failing else "works again")
        await self._tell(staff, names, text, what)

    async def _tell(self, staff: Staff, names: list[str], text: dict[str, str], what: str) -> None:
        """Texted straight through the SMS sink, not the outbox (the store may be what
        failed)."""
        sink = self.dispatcher.sinks.get("sms")
        if sink is None:
            log.error("%s, and there is no SMS sink to tell anyone", what)
            return
        for name in names:
            person = staff.people[name]
            message = Message(0, "sms", person.phone, text[person.language], person.language)
            try:
                result = await sink.send(message)
            except Exception as exc:
                log.error("could not tell %s that %s: %s", name, what, exc)
                continue
            log.error("told %s that %s: %s", name, what, result.outcome)

    def _declared(self, args: dict[str, Any]) -> None:
        """A staff declaration or a drill becomes an event like any sensor's. Staff naming
        a site that is not configured (a hand-made command) are refused: the command fails
        with why; a resident's call for help is never refused (their flat's site)."""
        site = str(args.get("site") or "")
        known = self.sites.get(site) if site else self.sites.only
        if known is None and args.get("actor") != "resident":
            self.sites.find(site)  # raises ValueError: which sites there are
        place = Location(
            site=known.id if known else site,
            building=args.get("building", ""),
            floor=args.get("floor", ""),
            unit=args.get("unit", ""),
            zone=args.get("zone", ""),
        )
        source = "drill" if args["drill"] else "manual"
        device = Device(
            f"{source}:{args['command']}", source, "", place, tags={"by": args["actor"]}
        )
        observation = Observation(
            Kind(args["kind"]), True, detail=f"{args['actor']}: {args['text']}".strip(": ")
        )
        self.ingest.submit(
            Report(
                source,
                device,
                (observation,),
                self.clock.now(),
                alive=False,
                raw=args["text"],
                drill=args["drill"],
            )
        )

    def _reload_soon(self) -> None:
        self._spawn(self.reload())

    async def close(self) -> None:
        """Stop taking messages, commit what was taken, then stop. Safe to call twice."""
        if not self._tasks:
            return
        self.stop.set()  # what goes now (the service lease handed over) is no loss
        inputs, self._tasks = self._tasks, []
        for task in inputs:
            task.cancel()
        await asyncio.gather(*inputs, return_exceptions=True)
        for link in self.links:
            await link.mqtt.close()
        for receiver in self.panels.receivers:
            await receiver.close()
        self.ingest.tick()  # saves last-seen times
        try:
            await asyncio.wait_for(self.ingest.drained(), DRAIN_TIMEOUT_S)
        except TimeoutError:
            log.error("shutdown: gave up waiting for the last commit")
        for task in (self._ingest_task, self._incidents_task):
            task.cancel()
        await asyncio.gather(self._ingest_task, self._incidents_task, return_exceptions=True)
        if self._http is not None:
            await self._http.cleanup()
        self.dispatcher.stop()  # ends after the batch in flight
        try:
            await asyncio.wait_for(self._dispatcher_task, DRAIN_TIMEOUT_S)
        except TimeoutError:
            log.error("shutdown: messages still being sent; they count as in flight")
        await self.dispatcher.close()
        await self.writer.close()
        await self._let_go()
        log.info(
            "alertd stopped: %s; messages %s",
            dict(self.ingest.counts),
            dict(self.dispatcher.counts),
        )

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stop.set)
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGHUP, self._reload_soon)
        try:
            await self.start()
        except BaseException:
            await self._let_go()
            raise
        try:
            await self.stop.wait()
        finally:
            if self.service is None:
                await self.close()
            else:  # a store that does not answer must not keep the process from exiting
                await self._close_within(SHUTDOWN_S)

    async def _close_within(self, seconds: float) -> None:
        if self._farewell is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._farewell), seconds / 2)
        try:
            await asyncio.wait_for(self.close(), seconds)
        except TimeoutError:
            log.error("shutdown: the store does not answer; stopping without it")


class CannotListen(Exception):
    """The `http:` address is taken or not this machine's: said in one line at start."""


def _bind(http: HttpConfig | None) -> socket.socket | None:
    """The `http:` address, bound and listening (None without one): an active instance
    and a standby alike, before they start anything that would then have to be undone."""
    if http is None:
        return None
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            http.host, http.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise CannotListen(f"http: cannot listen on {http.host}:{http.port}: {exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        why = os.strerror(exc.errno) if exc.errno else str(exc)
        raise CannotListen(
            f"http: cannot listen on {http.host}:{http.port}: {why} (another alertd on this "
            "machine? each instance needs its own http.port)"
        ) from None
    sock.setblocking(False)
    return sock


def make_engine(
    config: Config,
    playbooks: Mapping[str, Playbook],
    overrides: Mapping[str, Mapping[str, Playbook]] | None = None,
) -> Engine:
    """The engine as the configuration sets it up (the daemon and `replay` alike).
    `overrides`: the sites' own playbooks (unset: read from their folders)."""
    sites = sites_of(config)
    if overrides is None:
        overrides, _ = site_playbooks(config)
    return Engine(
        playbooks,
        config.site.tz,
        resident_sms_in_drills=config.drills.resident_sms,
        signatures=config.site.signatures,
        drill_end_s=config.drills.end_after_s,
        inhibit=config.inhibit,
        sites={s.id: Locale(s.tz, s.signatures) for s in sites},
        overrides=overrides,
        keep_values=any(set(s.providers) & {"aliyun", "tencent"} for s in sites),
    )


def site_playbooks(
    config: Config,
) -> tuple[dict[str, dict[str, Playbook]], dict[str, list[Problem]]]:
    """Each site's own playbooks (a folder per site), and what is wrong with them."""
    overrides: dict[str, dict[str, Playbook]] = {}
    problems: dict[str, list[Problem]] = {}
    for site in sites_of(config):
        if site.playbooks is not None:
            books = load_playbooks(site.playbooks)
            overrides[site.id] = books.enabled
            if books.problems:
                problems[site.id] = books.problems
    return overrides, problems


def _sinks(
    config: Config,
    publish: Publish,
    by_site: Mapping[str, Publish] | None = None,
    clock: Clock | None = None,
) -> dict[str, Sink]:
    """Twilio when configured, else the console (the demo); the PA over MQTT; webhooks."""
    console = ConsoleSink(lambda text: log.info("SEND %s", text))
    sinks: dict[str, Sink] = {
        "console": console,
        "sms": console,
        "call": console,
        "pa": PaSink(config.pa, publish, by_site),
        "webhook": WebhookSink(config.webhooks),
        "email": EmailSink(config.smtp) if config.smtp else console,
    }
    if config.twilio is not None:
        from integrations.twilio.sink import Sender, TwilioSink

        public = config.http.public_url if config.http else None
        senders = {s.id: Sender(s.from_number, s.messaging_service_sid) for s in sites_of(config)}
        sinks["sms"] = TwilioSink(config.twilio, "sms", public, senders)
        sinks["call"] = TwilioSink(config.twilio, "call", public, senders)
    sites = sites_of(config)
    if any(s.providers for s in sites):
        sinks["sms"] = _providers(config, sites, clock or SystemClock(), sinks["sms"])
    return sinks


def _providers(config: Config, sites: Sites, clock: Clock, twilio: Sink) -> Providers:
    """SMS through the providers each site lists, in order (alertd/outbox/providers.py),
    each with its registered templates; a templates file that cannot be read leaves
    that provider nothing to send (said at start; the next provider sends)."""
    from alertd.outbox.registered import for_sites

    by_provider, problems = for_sites(sites)
    for problem in problems:
        log.error("registered templates: %s (that provider sends nothing there)", problem)
    named = {p for s in sites for p in s.providers}
    sinks: dict[str, Sink] = {}
    if "twilio" in named:
        sinks["twilio"] = twilio
    if "aliyun" in named and config.aliyun is not None:
        from integrations.aliyun.sink import AliyunSink

        sinks["aliyun"] = AliyunSink(config.aliyun, by_provider["aliyun"], clock=clock)
    if "tencent" in named and config.tencent is not None:
        from integrations.tencent.sink import TencentSink

        sinks["tencent"] = TencentSink(config.tencent, by_provider["tencent"], clock=clock)
    return Providers(
        sinks,
        config.delivery.providers,
        clock,
        sites={s.id: s.providers for s in sites},
        timeout_s=config.delivery.provider_timeout_s,
        probe_s=config.delivery.probe_s,
    )


def _staff(config: Config) -> Staff | None:
    if not has_staff(config):
        return None
    try:
        return load_company_staff(config)
    except InvalidInput as exc:
        for problem in exc.problems:
            log.error("staff file: %s (staff are not notified until it is fixed)", problem)
        return None
