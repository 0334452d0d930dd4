"""Wiring: configuration, devices, store, ingest and sources, run until told to stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from alertd import memory
from alertd.clock import Clock, SystemClock
from alertd.config import Config, HttpConfig, panel_problems
from alertd.devices import Device, load_devices
from alertd.directory.staff import Staff, load_staff
from alertd.engine.engine import Engine
from alertd.events import Kind, Location, Observation
from alertd.incidents.service import IncidentService
from alertd.ingest.pipeline import Ingest
from alertd.ingest.report import Report
from alertd.outbox.broadcast import PaSink, Publish, WebhookSink
from alertd.outbox.dispatcher import Dispatcher
from alertd.outbox.email import EmailSink
from alertd.outbox.pa_ack import PaAcks, record_pa_ack
from alertd.outbox.sink import ConsoleSink, Message, Sink
from alertd.playbooks.loader import Playbooks, load_playbooks
from alertd.playbooks.schema import Playbook
from alertd.problems import InvalidInput, Problem
from alertd.store import Writer
from alertd.store.lock import InstanceLock
from integrations.mqtt.client import Incoming, MqttConnection
from integrations.mqtt.profiles import build_profiles
from integrations.mqtt.router import Router
from integrations.mqtt.source import MqttSource
from integrations.panels.setup import build as build_panels

log = logging.getLogger(__name__)

DRAIN_TIMEOUT_S = 10.0


def load_router(config: Config) -> tuple[Router, list[Problem]]:
    """Profiles and devices as the daemon would use them, with every problem found."""
    profiles = build_profiles(config.profiles, config.site.tz)
    devices, problems = load_devices(config.devices, profiles=profiles, site=config.site.name)
    router = Router(devices, profiles)
    return router, problems + router.problems


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

    async def start(self) -> None:
        self.lock = InstanceLock(self.config.storage.path)
        self.lock.acquire()  # before anything else: a second daemon changes nothing
        router, problems = load_router(self.config)
        problems += panel_problems(self.config, "config")
        for problem in problems:
            log.warning("%s", problem)
        self.problems = [str(p) for p in problems]
        self.panels = build_panels(
            self.config.panels,
            self.config.receivers,
            self.config.printer_formats,
            site=self.config.site.name,
            tz=self.config.site.tz,
            submit=lambda item: self.ingest.submit(item),
            clock=self.clock,
        )
        self.writer = Writer(self.config.storage.path, synchronous=self.config.storage.synchronous)
        await self.writer.open()
        self.ingest = await Ingest.open(
            self.writer, [*router.devices, *self.panels.devices], self.clock, self.config.ingest
        )
        pa_acks = PaAcks(self.config.pa.ack_topic) if self.config.pa.ack_topic else None
        self._own_topics = [pa_acks.filter] if pa_acks else []
        subscriptions = [*router.subscriptions, *self._own_topics]

        def on_message(msg: Incoming) -> None:
            if pa_acks is not None and pa_acks.matches(msg.topic):
                task = asyncio.ensure_future(self._pa_ack(pa_acks, msg))
                self._side_tasks.add(task)
                task.add_done_callback(self._side_tasks.discard)
            else:
                self.source.handle(msg)

        self.mqtt = MqttConnection(self.config.mqtt, subscriptions, on_message)
        self.source = MqttSource(
            router,
            self.ingest.submit,
            self.mqtt.ack,
            self.clock,
            client_id=self.config.mqtt.client_id,
            max_payload_bytes=self.config.mqtt.max_payload_bytes,
        )
        playbooks = load_playbooks(self.config.playbooks) if self.config.playbooks else Playbooks()
        for problem in playbooks.problems:
            log.error("playbook disabled: %s", problem)
            self.problems.append(f"playbook disabled: {problem}")
        staff = _staff(self.config)
        self.incidents = IncidentService(
            self.writer, make_engine(self.config, playbooks.enabled), self.clock, staff
        )
        self.dispatcher = Dispatcher(
            self.writer,
            _sinks(self.config, self.mqtt.publish),
            self.clock,
            self.config.delivery,
            staff,
            self.config.site.unit_format,
        )
        await self.dispatcher.start()
        self.incidents.delivery = self.dispatcher
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
        if self.config.http is not None:
            await self._serve_http(self.config.http)
        self._dispatcher_task = asyncio.create_task(self.dispatcher.run(), name="dispatcher")
        self._tasks = [
            asyncio.create_task(self.mqtt.run(), name="mqtt"),
            asyncio.create_task(self._ticker(), name="ticker"),
            *(
                asyncio.create_task(link.run(), name=f"panel {link.name}")
                for link in self.panels.links
            ),
        ]
        for task in (self._ingest_task, self._incidents_task, self._dispatcher_task, *self._tasks):
            task.add_done_callback(self._task_done)
        memory.settle()
        log.info(
            "alertd running: %d devices, %d subscriptions, store %s",
            len(router.devices),
            len(router.subscriptions),
            self.config.storage.path,
        )

    async def reload(self) -> None:
        """SIGHUP: playbooks, staff and devices read again. Each file is taken whole or
        not at all: a broken one keeps the one in force, and says why (log, health)."""
        problems: list[str] = []
        if self.config.playbooks is not None:
            books = load_playbooks(self.config.playbooks)
            if books.problems:
                problems += [f"playbooks not reloaded: {p}" for p in books.problems]
            else:
                self.incidents.engine = make_engine(self.config, books.enabled)
        if self.config.staff is not None:
            try:
                staff = load_staff(self.config.staff, self.config.site.country, self.config.site.tz)
            except InvalidInput as exc:
                problems += [f"staff file not reloaded: {p}" for p in exc.problems]
            else:
                self.dispatcher.staff = self.incidents.staff = staff
        router, device_problems = load_router(self.config)
        if device_problems:
            problems += [f"devices not reloaded: {p}" for p in device_problems]
        else:
            self.source.router = router
            self.ingest.replace_devices([*router.devices, *self.panels.devices])
            self.mqtt.resubscribe([*router.subscriptions, *self._own_topics])
        for problem in problems:
            log.error("reload: %s (the one in force stays)", problem)
        self.problems = problems
        log.info(
            "reload: %s",
            "done" if not problems else f"{len(problems)} problem(s), see above",
        )

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.critical(
                "%s stopped unexpectedly; shutting down so a supervisor restarts alertd",
                task.get_name(),
                exc_info=task.exception(),
            )
            self.failed = True
            self.stop.set()

    async def _serve_http(self, http: HttpConfig) -> None:
        """/healthz and /metrics; Twilio's callbacks when Twilio is configured."""
        from alertd import health

        app = web.Application(client_max_size=16 * 1024)
        health.routes(app, self)
        if self.config.twilio is not None:
            from integrations.twilio.callbacks import Callbacks

            Callbacks(
                self.writer,
                self.config.twilio.auth_token.get_secret_value(),
                http.public_url,
                self.dispatcher.staff,
                self.clock,
                self.dispatcher.totals,
            ).app(app)
        self._http = web.AppRunner(app, access_log=None)
        await self._http.setup()
        site = web.TCPSite(self._http, http.host, http.port)
        await site.start()
        log.info(
            "health, metrics%s and callbacks on http://%s:%d (public URL %s)",
            "" if self.config.twilio else " (no Twilio: no callbacks)",
            http.host,
            http.port,
            http.public_url,
        )

    async def _pa_ack(self, acks: PaAcks, msg: Incoming) -> None:
        """The broadcast controller confirmed: put it on the incident, then ack MQTT."""
        building = acks.building(msg.topic)
        text = msg.payload.decode("utf-8", "replace")[:500]
        await self.writer.call(
            record_pa_ack,
            self.writer.store.conn if self.writer.store else None,
            building,
            text,
            self.clock.now(),
        )
        self.mqtt.ack(msg.mid, msg.connection)

    async def _ticker(self) -> None:
        store_told = False
        tick_failed = ""
        while True:
            await asyncio.sleep(self.config.ingest.tick_s)
            self.ingest.tick()
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

    async def _tell_staff_about_the_store(self, failing: bool) -> None:
        """The store cannot be written: the outbox is in it, so the duty desk is texted
        straight through the SMS sink (and told again when it works)."""
        staff = self.dispatcher.staff
        sink = self.dispatcher.sinks.get("sms")
        if staff is None or sink is None:
            log.error("the store cannot be written and there is no staff or SMS sink to tell")
            return
        role = self.config.delivery.fallback_role
        names = staff.with_role(role) or list(staff.people)
        if failing:
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
        for name in names:
            person = staff.people[name]
            message = Message(0, "sms", person.phone, text[person.language], person.language)
            try:
                result = await sink.send(message)
            except Exception as exc:
                log.error("could not tell %s about the store: %s", name, exc)
                continue
            log.error(
                "told %s (%s) that the store %s: %s",
                name,
                role,
                "cannot be written" if failing else "works again",
                result.outcome,
            )

    def _declared(self, args: dict[str, Any]) -> None:
        """A staff declaration or a drill becomes an event like any sensor's."""
        place = Location(
            site=args.get("site") or self.config.site.name,
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
        inputs, self._tasks = self._tasks, []
        for task in inputs:
            task.cancel()
        await asyncio.gather(*inputs, return_exceptions=True)
        await self.mqtt.close()
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
        self.lock.release()
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
            if hasattr(self, "lock"):
                self.lock.release()
            raise
        try:
            await self.stop.wait()
        finally:
            await self.close()


def make_engine(config: Config, playbooks: Mapping[str, Playbook]) -> Engine:
    """The engine as the configuration sets it up (the daemon and `replay` alike)."""
    return Engine(
        playbooks,
        config.site.tz,
        resident_sms_in_drills=config.drills.resident_sms,
        signatures=config.site.signatures,
        drill_end_s=config.drills.end_after_s,
        inhibit=config.inhibit,
    )


def _sinks(config: Config, publish: Publish) -> dict[str, Sink]:
    """Twilio when configured, else the console (the demo); the PA over MQTT; webhooks."""
    console = ConsoleSink(lambda text: log.info("SEND %s", text))
    sinks: dict[str, Sink] = {
        "console": console,
        "sms": console,
        "call": console,
        "pa": PaSink(config.pa, publish),
        "webhook": WebhookSink(config.webhooks),
        "email": EmailSink(config.smtp) if config.smtp else console,
    }
    if config.twilio is not None:
        from integrations.twilio.sink import TwilioSink

        public = config.http.public_url if config.http else None
        sinks["sms"] = TwilioSink(config.twilio, "sms", public)
        sinks["call"] = TwilioSink(config.twilio, "call", public)
    return sinks


def _staff(config: Config) -> Staff | None:
    if config.staff is None:
        return None
    try:
        return load_staff(config.staff, config.site.country, config.site.tz)
    except InvalidInput as exc:
        for problem in exc.problems:
            log.error("staff file: %s (staff are not notified until it is fixed)", problem)
        return None
