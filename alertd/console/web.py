"""The console over aiohttp: `alertd web`, a process of its own beside the daemon.

It reads the store on a read-only connection and hands every staff action to the
daemon through the `commands` table, as the CLI does: a busy page or a slow browser
shares neither the daemon's event loop nor its writer. Its own writes (sessions, the
audit trail, a residents import) are short transactions on a second connection."""

from __future__ import annotations

import asyncio
import csv
import hmac
import io
import json
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

import jinja2
from aiohttp import web

from alertd.config import Config
from alertd.console import accounts, analytics, building, views
from alertd.console.audit import Actor, record
from alertd.console.files import Reread
from alertd.console.i18n import LANGUAGES, words
from alertd.console.render import declare_preview, environment, report_context
from alertd.console.roles import Role, may
from alertd.console.throttle import Throttle
from alertd.devices import Device, load_site_devices
from alertd.directory.importing import Plan
from alertd.directory.residents import ResidentsFile
from alertd.directory.staff import Staff
from alertd.engine.engine import BY_PEOPLE
from alertd.engine.wording import place, stamp
from alertd.events import Kind
from alertd.incidents import inputs
from alertd.incidents.commands import Outcome, run_command
from alertd.links import Grant, Links, link_key
from alertd.playbooks.loader import load_playbooks
from alertd.playbooks.schema import Playbook
from alertd.problems import InvalidInput, Problem
from alertd.sites import Site, has_staff, load_company_staff, sites_of
from alertd.store import Conn, StoreError
from alertd.store import incidents as incidents_db
from alertd.store import messages as messages_db
from alertd.store.access import Access
from alertd.store.sql import dict_rows, parse_iso
from integrations.mqtt.profiles import build_profiles

log = logging.getLogger(__name__)

COOKIE = "alertd_session"
#: how often the board looks for a new commit (PRAGMA data_version: no query when idle)
WATCH_S = 0.05
#: audit rows a page
AUDIT_PAGE = 100
#: rows a page of the residents and devices lists
LIST_PAGE = 200
#: what people did and said, on the phone page's short timeline (not the engine's steps)
PEOPLE = frozenset(
    {"opened", "acknowledged", "note", "on_site", "visited", "check_in", "reply",
     "help_request", "resolved", "closed", "restore_eta", "all_clear"}
)  # fmt: skip
#: how long a declaration waits for its incident to open (WATCH_S each) before saying
#: what became of the command instead
OPENED_TRIES = 60
HERE = Path(__file__).parent
DECLARABLE = [k.value for k in Kind if k is not Kind.UNKNOWN]
STATIC = HERE / "static"
MAX_BODY = 5 * 1024 * 1024
#: rows of a long list (a fan-out's deliveries, its roll call) shown before "all"
PAGE_ROWS = 200
#: an incident page read is shared by every session that asks within this
PAGE_TTL_S = 1.0
T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; media-src 'self' data:; frame-ancestors 'none'; form-action 'self'; "
    "base-uri 'none'"
)


class Recent:
    """What was read in the last `ttl_s` seconds, by key; concurrent askers share one read."""

    def __init__(self, ttl_s: float) -> None:
        self._ttl = ttl_s
        self._found: dict[Any, tuple[float, asyncio.Future[Any]]] = {}

    async def get(self, key: Any, read: Callable[[], Awaitable[T]]) -> T:
        now = time.monotonic()
        self._found = {k: v for k, v in self._found.items() if now - v[0] < self._ttl}
        if key not in self._found:
            self._found[key] = (now, asyncio.ensure_future(read()))
        future: asyncio.Future[T] = self._found[key][1]
        try:
            return await asyncio.shield(future)
        except Exception:
            self._found.pop(key, None)  # a failed read is not kept
            raise


class Previewed:
    """Imports read and shown, waiting for their account's confirmation: a few, briefly
    (the file is not written anywhere meanwhile)."""

    TTL_S = 900.0
    MOST = 20

    def __init__(self) -> None:
        self._open: dict[str, tuple[float, str, ResidentsFile]] = {}

    def put(self, account: str, found: ResidentsFile) -> str:
        now = time.monotonic()
        self._open = {k: v for k, v in self._open.items() if now - v[0] < self.TTL_S}
        while len(self._open) >= self.MOST:
            self._open.pop(next(iter(self._open)))
        nonce = secrets.token_urlsafe(16)
        self._open[nonce] = (now, account, found)
        return nonce

    def take(self, account: str, nonce: str) -> ResidentsFile | None:
        """The preview's file, once, and only for the account that uploaded it."""
        held = self._open.get(nonce)
        if held is None or held[1] != account or time.monotonic() - held[0] >= self.TTL_S:
            return None
        del self._open[nonce]
        return held[2]


class Console:
    def __init__(
        self, config: Config, *, now: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self.config = config
        self.now = now
        self.tz = config.site.tz
        self.sites = sites_of(config)
        self.throttle = Throttle()
        self.store = Access(config.storage.path, config.storage.secret_url)
        self.read = self.store.read
        self.write = self.store.write
        self.board: list[dict[str, Any]] = []
        self.board_at = time.time()
        self._changed = asyncio.Condition()
        self._rendered: dict[Any, str] = {}
        self._rendered_at = -1.0
        self.ending = False
        self.env = environment(self.tz)
        self._envs: dict[str, jinja2.Environment] = {}
        self.pages = Recent(PAGE_TTL_S)
        self._files = Reread()
        self.imports = Previewed()
        self._links: Links | None = None

    async def links(self) -> Links:
        """The phone links' checker, with the store's key (made there if the daemon has
        not yet)."""
        if self._links is None:
            key = await self.write(link_key)
            self._links = Links(key, self.config.console.public_url)
        return self._links

    # -- the daemon's files ------------------------------------------------------------

    def playbooks(self) -> dict[str, Playbook]:
        folder = self.config.playbooks
        if folder is None:
            return {}
        return self._files.get(folder, lambda p: dict(load_playbooks(p).enabled))

    def staff(self) -> Staff | None:
        """The staff files (raises InvalidInput when one is broken), or None without."""
        if not has_staff(self.config):
            return None
        files = (self.config.staff, *(s.staff for s in self.sites))
        paths = tuple(dict.fromkeys(p for p in files if p is not None))
        return self._files.get_all(paths, lambda: load_company_staff(self.config))

    def devices(self) -> tuple[list[Device], list[Problem]]:
        profiles = build_profiles(self.config.profiles, self.tz)
        paths = tuple(dict.fromkeys(s.devices for s in self.sites))
        return self._files.get_all(paths, lambda: load_site_devices(self.sites, profiles))

    # -- the store -----------------------------------------------------------------

    async def audit(
        self,
        request: web.Request,
        action: str,
        detail: str,
        incident: int | None = None,
        site: str | None = None,
    ) -> None:
        await self.write(record, self.actor(request), action, detail, self.now(), incident, site)

    def actor(self, request: web.Request) -> Actor:
        return web_actor(request["session"].user, request.remote or "")

    # -- the live board ------------------------------------------------------------

    async def watch(self) -> None:
        """Re-read the board after each commit of another process; wake the streams when
        it changed. A failed read (the store busy, a disk error) is logged and retried:
        the board must not freeze silently."""
        version = None
        failing = False
        while True:
            try:
                now_version = await self.store.version()
                if now_version != version:
                    board = await self.read(views.board, board=True)
                    version = now_version
                    if board != self.board:
                        self.board, self.board_at = board, time.time()
                        async with self._changed:
                            self._changed.notify_all()
                if failing:
                    log.warning("the board reads the store again")
                failing = False
            except StoreError as exc:
                if not failing:
                    log.error("the board cannot read the store: %s (retrying)", exc)
                failing = True
            await asyncio.sleep(WATCH_S)

    def rendered(self, at: float, view: Any, render: Callable[[], str]) -> str:
        """The board's update as of `at` for one view of it, rendered once per change."""
        if self._rendered_at != at:
            self._rendered, self._rendered_at = {}, at
        if view not in self._rendered:
            self._rendered[view] = render()
        return self._rendered[view]

    async def next_board(self, seen: float) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self.board_at != seen or self.ending)

    async def end_streams(self) -> None:
        """The console stops: open boards' streams end now, not at their next keep-alive
        (the server waits for every request to finish)."""
        self.ending = True
        async with self._changed:
            self._changed.notify_all()

    def close(self) -> None:
        self.store.close()

    # -- pages -----------------------------------------------------------------------

    def render(
        self, request: web.Request, name: str, about: str = "", **context: Any
    ) -> web.Response:
        """`about`: the site the page is about: its times in its zone, its centre's name."""
        lang = language(request)
        sess: accounts.Session | None = request.get("session")
        own = self.sites.get(about) if about else None
        env = self.env
        if own is not None and own.tz != self.tz:
            env = self._envs.get(own.id) or self._envs.setdefault(own.id, environment(own.tz))
        text = env.get_template(name).render(
            w=words(lang),
            lang=lang,
            session=sess,
            banner_html=banner(self, request) if sess else "",
            may=(lambda p: may(sess.user.role, p)) if sess else (lambda p: False),
            centre=own.centre if own else self.config.console.centre or self.config.site.name,
            **context,
        )
        return web.Response(text=text, content_type="text/html")


def web_actor(user: accounts.User, remote: str) -> Actor:
    """A console user as the audit trail and the timeline name them: the staff member
    the account acts as, and the account behind it."""
    return Actor(user.staff or user.name, "web", remote, f"account {user.name}")


def local_path(path: str) -> str:
    """Where to go back to: a path of this site, never another site. Judged as a browser
    reads it (the WHATWG URL parser drops tabs and newlines anywhere and control
    characters and spaces at the ends, and takes a backslash for a slash), so that
    `/<TAB>/evil.example` and `/\\evil.example` are the `//evil.example` they become."""
    seen = re.sub(r"[\t\n\r]", "", path).strip("".join(map(chr, range(33)))).replace("\\", "/")
    if not seen.startswith("/") or seen.startswith("//") or re.search(r"[\x00-\x1f\x7f]", seen):
        return "/"
    parts = urlsplit(seen)
    return seen if not parts.scheme and not parts.netloc else "/"


def language(request: web.Request) -> str:
    lang = request.cookies.get("lang", "zh")
    return lang if lang in LANGUAGES else "zh"


def require(request: web.Request, permission: str) -> accounts.Session:
    sess: accounts.Session = request["session"]
    if not may(sess.user.role, permission):
        raise web.HTTPForbidden(text=words(language(request))["no_rights"])
    return sess


def granted(request: web.Request) -> tuple[str, ...] | None:
    """The sites the account sees (None: every site)."""
    sites = request["session"].user.sites
    return None if sites is None else tuple(sorted(sites))


def shown(console: Console, request: web.Request) -> tuple[str, ...] | None:
    """The sites a page shows: the account's, or the one its `?site=` picks of them."""
    pick = request.query.get("site", "")
    if not pick:
        return granted(request)
    site = console.sites.get(pick)
    if site is None:
        raise web.HTTPNotFound(text=f"no site {pick!r}")
    return (own(request, site.id),)


def own(request: web.Request, site: str) -> str:
    """`site`, if the account may see it; else 403 (and nothing is written)."""
    if not request["session"].user.sees(site):
        raise web.HTTPForbidden(text=words(language(request))["not_your_site"])
    return site


async def guard(console: Console, request: web.Request, number: int) -> None:
    """The incident exists (404) and is at one of the account's sites (403)."""
    site = await console.read(incidents_db.site_of, number)
    if site is None:
        raise web.HTTPNotFound(text=f"no incident {number}")
    own(request, site)


# -- middleware ----------------------------------------------------------------------

#: no session needed: the phone page's link is its own proof (alertd/links.py)
PUBLIC = ("/login", "/static/", "/lang/", "/m/")


@web.middleware
async def headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    if not request.path.startswith("/static/"):
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def error_pages(console: Console) -> Any:
    """A refusal a person's browser gets is a page of the console: its navigation, what
    went wrong (the message names what and where) and what to do next. Scripts and the
    tests' clients (not asking for HTML) get the plain message."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:
            wants_page = "text/html" in request.headers.get("Accept", "")
            if exc.status < 400 or not wants_page or request.path.startswith("/static/"):
                raise
            said = exc.text or exc.reason
            if said.startswith(f"{exc.status}: "):  # aiohttp's default text
                said = said.split(": ", 1)[1]
            page = console.render(request, "error.html", status=exc.status, said=said)
            page.set_status(exc.status)
            return page

    return middleware


def authenticate(console: Console) -> Any:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(PUBLIC):
            return await handler(request)
        token = request.cookies.get(COOKIE, "")
        sess = await console.read(accounts.session, token, console.now()) if token else None
        if sess is None:
            if request.method == "GET" and request.path != "/board/stream":
                raise web.HTTPSeeOther(f"/login?next={request.path_qs}")
            raise web.HTTPUnauthorized(text="sign in first")
        request["session"] = sess
        if request.method == "POST":
            form = await request.post()
            sent = str(form.get("csrf", "")) or request.headers.get("X-CSRF-Token", "")
            if not hmac.compare_digest(sent.encode(), sess.csrf.encode()):
                log.warning(
                    "POST %s without a valid CSRF token from %s", request.path, request.remote
                )
                raise web.HTTPForbidden(text="missing or wrong CSRF token: reload the page")
        return await handler(request)

    return middleware


# -- handlers ------------------------------------------------------------------------


def routes(console: Console) -> web.RouteTableDef:
    r = web.RouteTableDef()
    c = console

    @r.get("/static/{name}")
    async def static(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        path = STATIC / name
        if "/" in name or not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path)

    @r.get("/lang/{lang}")
    async def switch(request: web.Request) -> web.StreamResponse:
        lang = request.match_info["lang"]
        back = request.query.get("next", "/")
        response = web.HTTPSeeOther(local_path(back))
        if lang in LANGUAGES:
            response.set_cookie("lang", lang, max_age=365 * 86400, samesite="Strict", httponly=True)
        raise response

    @r.get("/login")
    async def login_page(request: web.Request) -> web.StreamResponse:
        token = request.cookies.get("login_csrf") or secrets.token_urlsafe(16)
        response = c.render(
            request, "login.html", error="", token=token, next=request.query.get("next", "/")
        )
        response.set_cookie("login_csrf", token, httponly=True, samesite="Strict", secure=secure(c))
        return response

    @r.post("/login")
    async def login(request: web.Request) -> web.StreamResponse:
        form = await request.post()
        token = request.cookies.get("login_csrf", "")
        if not token or not hmac.compare_digest(str(form.get("csrf", "")).encode(), token.encode()):
            raise web.HTTPForbidden(text="missing or wrong CSRF token: reload the sign-in page")
        name, password = str(form.get("name", "")), str(form.get("password", ""))
        remote, now = request.remote or "", c.now()
        w = words(language(request))
        wait = c.throttle.wait(remote, name, now)
        if wait is not None:
            log.warning("sign-in of %r from %s refused: too many failures", name, remote)
            until = (now + wait).astimezone(c.config.site.tz).strftime("%H:%M:%S")
            error = w["too_many"].format(until=until)
            response = c.render(request, "login.html", error=error, token=token, next="/")
            response.set_status(429)
            response.headers["Retry-After"] = str(int(wait.total_seconds()) + 1)
            return response
        user = await c.write(accounts.verify, name, password)
        if user is None:
            c.throttle.failed(remote, name, now)
            await c.write(
                record, Actor(name, "web", remote), "login_failed", "wrong account or password", now
            )
            response = c.render(
                request, "login.html", error=w["wrong_login"], token=token, next="/"
            )
            response.set_status(401)
            return response
        c.throttle.succeeded(remote, name)
        session_token = await c.write(accounts.open_session, user, remote, now)
        await c.write(
            record,
            web_actor(user, remote),
            "login",
            f"role {user.role}",
            now,
        )
        response = web.HTTPSeeOther(local_path(str(form.get("next", "/"))))
        response.set_cookie(
            COOKIE,
            session_token,
            httponly=True,
            samesite="Strict",
            secure=secure(c),
            max_age=int(accounts.SESSION_TTL.total_seconds()),
        )
        raise response

    @r.post("/logout")
    async def logout(request: web.Request) -> web.StreamResponse:
        await c.write(accounts.close_session, request.cookies.get(COOKIE, ""))
        response = web.HTTPSeeOther("/login")
        response.del_cookie(COOKIE)
        raise response

    @r.get("/")
    async def board(request: web.Request) -> web.StreamResponse:
        return c.render(
            request,
            "board.html",
            board_html=board_rows(c, request),
            strip_html=site_strip(c, request),
            site_choices=choices(c, request),
            site=request.query.get("site", ""),
        )

    @r.get("/board/stream")
    async def stream(request: web.Request) -> web.StreamResponse:
        """Server-sent events each time the board changes: every page's alarm banner,
        and the board's rows for the board (`rows=1`)."""
        shown(c, request)  # a site not the account's: refused before the stream starts
        rows = request.query.get("rows") == "1"
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
        )
        seen = -1.0
        try:  # a board closed at any moment (even before its headers went) is no error
            await response.prepare(request)
            while not c.ending:
                if seen == c.board_at:
                    try:
                        await asyncio.wait_for(c.next_board(seen), timeout=15)
                    except TimeoutError:
                        await response.write(b": keep-alive\n\n")
                        continue
                    if c.ending:
                        break
                seen = c.board_at
                token = request.cookies.get(COOKIE, "")
                if await c.read(accounts.session, token, c.now(), board=True) is None:
                    break  # signed out, disabled or reset meanwhile: no more updates

                def update(at: float = seen) -> str:
                    ringing = alarms(c, request)
                    return json.dumps(
                        {
                            **(
                                {"html": board_rows(c, request), "strip": site_strip(c, request)}
                                if rows
                                else {}
                            ),
                            "banner": banner(c, request),
                            "alarm": any(not r["drill"] for r in ringing),
                            "drill": any(r["drill"] for r in ringing),
                            "at": at,
                        }
                    )

                # the desks that see the same board (same sites, language and role's
                # view) share one rendering of it: 20 boards open cost one, not 20
                view = (rows, language(request), may(request["session"].user.role, "names"),
                        shown(c, request), granted(request))  # fmt: skip
                payload = c.rendered(seen, view, update)
                await response.write(f"event: board\ndata: {payload}\n\n".encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        return response

    @r.get("/incidents/{id:\\d+}")
    async def incident(request: web.Request) -> web.StreamResponse:
        await guard(c, request, incident_number(request))
        return await incident_page(c, request)

    @r.get("/incidents/{id:\\d+}/building")
    async def picture(request: web.Request) -> web.StreamResponse:
        """The incident's building picture alone: what the board shows of each alarm,
        fetched again as it changes (the same shared read as the incident page's)."""
        number = incident_number(request)
        await guard(c, request, number)
        lang = language(request)

        def gather(conn: Conn) -> str | None:
            found = incidents_db.find(conn, number)
            if found is None:
                return None
            role = request["session"].user.role
            roll, doors = views.roll_call(conn, number, role), views.door_checks(conn, found, role)
            return building_svg(c, conn, found, roll, doors, lang)

        version = await c.read(incidents_db.version, number)
        drawn = await c.pages.get((number, "building", lang, version), lambda: c.read(gather))
        if drawn is None:
            raise web.HTTPNotFound(text=f"no incident {number}")
        return web.Response(text=drawn, content_type="text/html")

    @r.post("/incidents/{id:\\d+}/act")
    async def act(request: web.Request) -> web.StreamResponse:
        require(request, "act")
        number = incident_number(request)
        await guard(c, request, number)
        form = await request.post()
        action = str(form.get("action", ""))
        text = str(form.get("text", "")).strip()
        args: dict[str, Any] = {}
        if action == "eta":
            args["minutes"] = str(form.get("minutes", ""))  # checked in `command`
        elif action == "visited":
            unit = str(form.get("unit", "")).strip()
            if not unit:
                raise web.HTTPBadRequest(text="which unit was visited?")
            text = f"visited {unit}" + (f" {text}" if text else "")
        elif action in ("resolve", "close"):
            if form.get("force") == "1":
                args["force"] = True
        elif action not in ("ack", "note", "on_site", "all_clear"):
            raise web.HTTPBadRequest(text=f"unknown action {action!r}")
        if action == "note" and not text:
            raise web.HTTPBadRequest(text="the note is empty")
        outcome = await command(c, request, action, number, text, args)
        said = {"done": action, "state": outcome.state, "result": outcome.result[:200]}
        raise web.HTTPSeeOther(f"/incidents/{number}?{urlencode(said)}")

    @r.get("/m/{token}")
    async def phone(request: web.Request) -> web.StreamResponse:
        """The page a staff text links to, for a phone: the incident as that person
        needs it on the stairs, and its buttons. Every use is audited."""
        grant, signed_in = await phone_grant(c, request)
        number = grant.incident
        # what the door-check SMS already tells the person: the duty desk's view
        role = request["session"].user.role if signed_in else Role.DUTY

        def gather(conn: Conn) -> dict[str, Any] | None:
            found = incidents_db.find(conn, number)
            if found is None:
                return None
            lines = views.timeline(conn, number, role)
            return {
                "incident": found,
                "timeline": [t for t in lines if t["type"] in PEOPLE][-8:],
                "roll": views.roll_call(conn, number, role),
                "doors": views.door_checks(conn, found, role),
            }

        context = await c.read(gather)
        if context is None:
            raise web.HTTPNotFound(text=f"no incident {number}")
        places = {d.device_id: d.location for d in c.devices()[0]}  # where the alarms are
        active = json.loads(context["incident"]["active"] or "[]")
        context["alarms"] = sorted(
            {
                place(places[device], language(request))
                for device in (entry.split(" ")[0] for entry in active)
                if device in places
            }
        )
        await c.write(record, phone_actor(grant, request), "phone_view", "", c.now(), number)
        return c.render(
            request,
            "phone.html",
            context["incident"]["site"],
            grant=grant,
            full=signed_in,
            token=request.match_info["token"],
            done=dict(request.query),
            **context,
        )

    @r.post("/m/{token}")
    async def phone_act(request: web.Request) -> web.StreamResponse:
        """The link alone acknowledges, as the person it was sent to; signed in as that
        person, on site and a note too."""
        grant, signed_in = await phone_grant(c, request)
        form = await request.post()
        action = str(form.get("action", ""))
        if action not in (("ack", "on_site", "note") if signed_in else ("ack",)):
            raise web.HTTPForbidden(text=f"{action or 'that'}: sign in to the console first")
        if signed_in:
            sent = str(form.get("csrf", ""))
            if not hmac.compare_digest(sent.encode(), request["session"].csrf.encode()):
                raise web.HTTPForbidden(text="missing or wrong CSRF token: reload the page")
        text = str(form.get("text", "")).strip()
        if action == "note" and not text:
            raise web.HTTPBadRequest(text="the note is empty")
        try:
            outcome = await c.store.apart(
                run_command, action, grant.incident, phone_actor(grant, request), text, {}
            )
        except ValueError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        said = {"done": action, "state": outcome.state, "result": outcome.result[:200]}
        raise web.HTTPSeeOther(f"/m/{request.match_info['token']}?{urlencode(said)}")

    @r.post("/reveal")
    async def reveal(request: web.Request) -> web.StreamResponse:
        """One resident's full number, with a reason; audited."""
        require(request, "reveal")
        form = await request.post()
        try:
            reason = inputs.free_text(str(form.get("reason", "")), "reason")
        except ValueError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        try:
            resident = int(str(form.get("resident", "")))
        except ValueError:
            raise web.HTTPBadRequest(text="which resident?") from None
        if len(reason) < 3:
            raise web.HTTPBadRequest(text="say why you need the full number (it is audited)")
        found = await c.read(views.full_phone, resident)
        if found is None:
            raise web.HTTPNotFound(text=f"no resident {resident}")
        number, unit, site = found
        own(request, site)
        incident_ = str(form.get("incident", ""))
        await c.audit(
            request,
            "reveal_phone",
            f"resident {resident} ({unit}): {reason}",
            int(incident_) if incident_.isdigit() else None,
            site,
        )
        return c.render(
            request,
            "reveal.html",
            number=number,
            unit=unit,
            reason=reason,
            back=local_path(str(form.get("back", "/"))),
        )

    @r.get("/incidents/{id:\\d+}/report")
    async def report(request: web.Request) -> web.StreamResponse:
        number = incident_number(request)
        await guard(c, request, number)
        role = request["session"].user.role
        context = await c.read(report_context, c.config, number, role, c.playbooks())
        if context is None:
            raise web.HTTPNotFound(text=f"no incident {number}")
        page = c.render(request, "report.html", context["incident"]["site"], **context)
        # a page of its own (the CLI prints it to a file): its print styles are inline
        page.headers["Content-Security-Policy"] = CSP.replace(
            "style-src 'self'", "style-src 'unsafe-inline'"
        )
        return page

    def declare_form(
        request: web.Request, form: dict[str, str], preview: dict[str, Any] | None
    ) -> web.Response:
        return c.render(
            request,
            "declare.html",
            preview=preview,
            form=form,
            kinds=DECLARABLE,
            playbooks=sorted(c.playbooks()),
            site_choices=choices(c, request),
        )

    @r.get("/declare")
    async def declare_page(request: web.Request) -> web.StreamResponse:
        require(request, "act")
        return declare_form(request, {}, None)

    @r.post("/declare")
    async def declare(request: web.Request) -> web.StreamResponse:
        require(request, "act")
        form = {k: str(v).strip() for k, v in (await request.post()).items() if k != "csrf"}
        kind = form.get("kind", "")
        try:
            Kind(kind)
        except ValueError:
            raise web.HTTPBadRequest(text=f"unknown kind {kind!r}") from None
        if not form.get("building"):
            raise web.HTTPBadRequest(text="building: where is it?")
        site = pick_site(c, request, form.get("site", ""))
        place_args = {k: form.get(k, "") for k in ("building", "floor", "unit", "zone")}
        place_args["site"] = site.id
        if form.get("confirm") != "1":
            try:
                people = c.staff()
            except InvalidInput:
                people = None  # the preview names roles only; the daemon says why
            preview = await c.read(
                declare_preview, c.playbooks(), site.unit_format, kind, place_args, people
            )
            # the confirmation carries one name for this emergency: sent twice (a double
            # click, a resubmitted form), it is the same report, not a second incident
            form["nonce"] = f"web-{request['session'].user.id}-{secrets.token_hex(6)}"
            return declare_form(request, form, preview)
        nonce = form.get("nonce", "")
        if not nonce.startswith("web-"):
            raise web.HTTPBadRequest(text="confirm from the preview")
        args = {"kind": kind, **place_args, "command": nonce}
        outcome = await command(c, request, "declare", None, form.get("text", ""), args)
        return await opened(request, "declare", outcome, f"manual:{nonce}")

    @r.post("/drill")
    async def drill(request: web.Request) -> web.StreamResponse:
        require(request, "act")
        form = await request.post()
        name, building = str(form.get("playbook", "")), str(form.get("building", "")).strip()
        books = c.playbooks()
        if name not in books:
            raise web.HTTPBadRequest(text=f"no enabled playbook {name!r}")
        if not building:
            raise web.HTTPBadRequest(text="building: where is the drill?")
        site = pick_site(c, request, str(form.get("site", "")))
        args = {
            "kind": books[name].match.kinds[0].value,
            "site": site.id,
            "building": building,
            "floor": str(form.get("floor", "")),
            "unit": "",
            "zone": "",
            "command": f"web-drill-{int(time.time() * 1000)}",
        }
        outcome = await command(c, request, "drill", None, f"drill of {name}", args)
        return await opened(request, "drill", outcome, f"drill:{args['command']}")

    async def opened(
        request: web.Request, what: str, outcome: Outcome, device: str
    ) -> web.Response:
        """After a declaration or a drill: its incident's page, once the daemon opened
        it (or joined it to one already open there); else what became of the command."""
        if outcome.state == "done":
            for _ in range(OPENED_TRIES):
                number = await c.read(incidents_db.incident_of_device, device)
                if number is not None:
                    raise web.HTTPSeeOther(f"/incidents/{number}")
                await asyncio.sleep(WATCH_S)  # the daemon, another process, is opening it
        return c.render(request, "done.html", what=what, outcome=outcome)

    @r.get("/analytics")
    async def analytics_page(request: web.Request) -> web.StreamResponse:
        require(request, "analytics")
        period = period_of(c, request)
        tables = await c.read(run_analytics, c, period)
        return c.render(
            request,
            "analytics.html",
            tables=tables,
            period=period,
            query=request.query_string,
            start=period.start.astimezone(c.tz).date().isoformat(),
            end=(period.end.astimezone(c.tz) - timedelta(seconds=1)).date().isoformat(),
            site_choices=choices(c, request),
            site=request.query.get("site", ""),
        )

    @r.get("/analytics/{table}.csv")
    async def analytics_csv(request: web.Request) -> web.StreamResponse:
        require(request, "analytics")
        tables = await c.read(run_analytics, c, period_of(c, request))
        table = tables.get(request.match_info["table"])
        if table is None:
            raise web.HTTPNotFound(
                text=f"no table {request.match_info['table']!r} (tables: {', '.join(tables)})"
            )
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(table.columns)
        writer.writerows(table.rows)
        return web.Response(
            text=out.getvalue(),
            content_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{table.name}.csv"'},
        )

    @r.get("/devices")
    async def devices(request: web.Request) -> web.StreamResponse:
        building = request.query.get("building", "")
        sites = shown(c, request)
        state = await c.read(views.devices)
        known, problems = c.devices()
        known = [d for d in known if sites is None or d.location.site in sites]
        rows = []
        for d in sorted(known, key=lambda d: (d.location.building, d.location.floor, d.device_id)):
            if building and d.location.building != building:
                continue
            s = state.get(d.device_id, {"last_seen": None, "battery": None, "active": {}})
            rows.append(
                {
                    "id": d.device_id,
                    "building": d.location.building,
                    "floor": d.location.floor,
                    "unit": d.location.unit,
                    "zone": d.location.zone,
                    **s,
                    "offline_since": s["active"].get("sensor.offline"),
                }
            )
        buildings = sorted({d.location.building for d in known})
        page = paged(request, rows, ("id", "building", "floor", "unit", "zone"))
        return c.render(
            request,
            "devices.html",
            rows=page.rows,
            paging=page,
            building=building,
            buildings=buildings,
            problems=[str(p) for p in problems] if granted(request) is None else [],
            site_choices=choices(c, request),
            site=request.query.get("site", ""),
        )

    @r.get("/directory")
    async def directory(request: web.Request) -> web.StreamResponse:
        return await directory_page(c, request, problems=None)

    @r.post("/directory/import")
    async def import_(request: web.Request) -> web.StreamResponse:
        """Read the upload and show what it would change; nothing is written yet."""
        from alertd.directory import importing
        from alertd.directory.residents import read_residents

        require(request, "import")
        form = await request.post()
        upload = form.get("file")
        if not isinstance(upload, web.FileField):
            raise web.HTTPBadRequest(text="choose a CSV file")
        name = Path(upload.filename or "residents.csv").name
        chosen = str(form.get("site", ""))
        of_site = c.sites.resident_site(pick_site(c, request, chosen).id if chosen else "")

        def site_of(cell: str) -> tuple[str, str]:  # rows of another site: refused
            site, region = of_site(cell)
            if not request["session"].user.sees(site):
                raise ValueError(f"site {site!r} is not one of this account's")
            return site, region

        found = read_residents(upload.file.read(), c.config.site.country, name=name, site=site_of)
        planned = await c.read(importing.plan, found)
        nonce = "" if found.refused else c.imports.put(request["session"].user.name, found)
        said = [str(p) for p in (*found.problems, *found.warnings)]
        return await directory_page(c, request, problems=said, preview=planned, nonce=nonce)

    @r.post("/directory/import/apply")
    async def import_apply(request: web.Request) -> web.StreamResponse:
        """Apply a previewed import, confirmed (and its removals, when it needs that)."""
        from alertd.directory import importing

        require(request, "import")
        form = await request.post()
        nonce = str(form.get("nonce", ""))
        found = c.imports.take(request["session"].user.name, nonce)
        if found is None:
            raise web.HTTPBadRequest(text="this preview is no longer open: upload the file again")
        allow = form.get("allow_removals") == "1"
        try:
            done = await c.write(partial(importing.apply, allow_removals=allow), found, c.now())
        except importing.NeedsConfirmation:
            planned = await c.read(importing.plan, found)
            again = c.imports.put(request["session"].user.name, found)
            # the preview says why, in the page's language
            said = [str(p) for p in (*found.problems, *found.warnings)]
            return await directory_page(c, request, problems=said, preview=planned, nonce=again)
        await c.audit(request, "import_residents", done.summary())
        return await directory_page(
            c,
            request,
            problems=[str(p) for p in (*found.problems, *found.warnings)],
            summary=done.summary(language(request)),
        )

    @r.get("/audit")
    async def audit(request: web.Request) -> web.StreamResponse:
        from alertd.store.accounts import audit as rows

        require(request, "audit")
        q = request.query
        typed = q.get("incident", "").strip().lstrip("#")
        if typed and not typed.isdigit():
            raise web.HTTPBadRequest(text=f"incident: {typed!r} is not an incident number")
        try:
            incident = inputs.incident_number(int(typed) if typed else None)
        except ValueError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        before = int(q["before"]) if q.get("before", "").isdigit() else None
        shown_rows = await c.read(
            partial(
                rows,
                who=q.get("who") or None,
                action=q.get("action") or None,
                incident=incident,
                before=before,
                limit=AUDIT_PAGE,
                sites=granted(request),
                newest_first=True,
            )
        )
        older = shown_rows[-1]["id"] if len(shown_rows) == AUDIT_PAGE else None
        filters = {k: q.get(k, "") for k in ("who", "action", "incident")}
        return c.render(request, "audit.html", rows=shown_rows, older=older, **filters)

    return r


async def phone_grant(console: Console, request: web.Request) -> tuple[Grant, bool]:
    """The incident and person the link names (403 for a link that is not ours, altered
    or expired: it does nothing), and whether the browser is signed in as that person,
    with an account that may act and sees the incident's site."""
    links = await console.links()
    grant = links.check(request.match_info["token"], console.now())
    if grant is None:
        raise web.HTTPForbidden(
            text="this link is not valid or has expired: open the incident from the console"
        )
    token = request.cookies.get(COOKIE, "")
    sess = await console.read(accounts.session, token, console.now()) if token else None
    if sess is None:
        return grant, False
    request["session"] = sess
    site = await console.read(incidents_db.site_of, grant.incident)
    mine = sess.user.staff == grant.staff and sess.user.sees(site or "")
    return grant, mine and may(sess.user.role, "act")


def phone_actor(grant: Grant, request: web.Request) -> Actor:
    """The person the link was sent to, by the phone page (the audit says which)."""
    sess = request.get("session")
    how = f"account {sess.user.name}" if sess is not None else "link"
    return Actor(grant.staff, "phone", request.remote or "", how)


@dataclass(frozen=True, slots=True)
class Paged:
    """One page of a long list, after its search (`q`: every word must appear)."""

    rows: list[dict[str, Any]]
    total: int
    page: int
    pages: int
    q: str
    path: str
    query: dict[str, str]

    def link(self, page: int) -> str:
        return f"{self.path}?{urlencode({**self.query, 'page': page})}"


def paged(request: web.Request, rows: list[dict[str, Any]], fields: tuple[str, ...]) -> Paged:
    q = request.query.get("q", "").strip()
    words_ = q.lower().split()
    if words_:
        rows = [
            r
            for r in rows
            if all(any(w in str(r.get(f) or "").lower() for f in fields) for w in words_)
        ]
    pages = max(1, -(-len(rows) // LIST_PAGE))
    raw = request.query.get("page", "1")
    page = min(pages, max(1, int(raw))) if raw.isdigit() and len(raw) < 7 else 1
    shown_rows = rows[(page - 1) * LIST_PAGE : page * LIST_PAGE]
    return Paged(shown_rows, len(rows), page, pages, q, request.path, dict(request.query))


def secure(console: Console) -> bool:
    return console.config.console.public_url.startswith("https://")


def incident_number(request: web.Request) -> int:
    """The incident of the URL; a number no incident can have is not found, not a 500."""
    try:
        number = inputs.incident_number(int(request.match_info["id"]))
    except ValueError as exc:
        raise web.HTTPNotFound(text=str(exc)) from None
    assert number is not None
    return number


async def command(
    console: Console,
    request: web.Request,
    name: str,
    incident: int | None,
    text: str,
    args: dict[str, Any],
) -> Outcome:
    actor = console.actor(request)
    if not request["session"].user.staff:
        raise web.HTTPForbidden(text="this account is not linked to a staff member")

    try:
        return await console.store.apart(run_command, name, incident, actor, text, args)
    except ValueError as exc:  # what was typed is out of bounds: nothing was written
        raise web.HTTPBadRequest(text=str(exc)) from None


def visible(console: Console, request: web.Request) -> list[dict[str, Any]]:
    """The board's rows of the sites the page shows."""
    sites = shown(console, request)
    return [r for r in console.board if sites is None or r["site"] in sites]


def choices(console: Console, request: web.Request) -> list[tuple[str, str]]:
    """(id, name) of the sites the account may pick, when there are several."""
    if not console.sites.several:
        return []
    user = request["session"].user
    return [(s.id, s.name) for s in console.sites if user.sees(s.id)]


def pick_site(console: Console, request: web.Request, key: str) -> Site:
    """The site a form names (a site of the account's), or the only one it may pick."""
    mine = [s for s in console.sites if request["session"].user.sees(s.id)]
    if not key and len(mine) == 1:
        return mine[0]
    try:
        site = console.sites.find(key)
    except ValueError as exc:
        raise web.HTTPBadRequest(text=f"site: {exc}") from None
    own(request, site.id)
    return site


def board_rows(console: Console, request: web.Request) -> str:
    return _rows(console, request, "board_rows.html", visible(console, request))


def site_strip(console: Console, request: web.Request) -> str:
    """Each site the board shows as a row of its buildings (the devices file's and the
    incidents'), each coloured by its most urgent open incident: the head office's view."""
    rows = visible(console, request)
    sites = shown(console, request)
    known: dict[str, set[str]] = {}
    for device in console.devices()[0]:
        if device.location.building:
            known.setdefault(device.location.site, set()).add(device.location.building)
    for r in rows:
        if r["building"]:
            known.setdefault(r["site"], set()).add(r["building"])
    rank = {"alarm": 4, "drill": 3, "open": 2, "acknowledged": 1}
    strip = []
    for site in console.sites:
        if sites is not None and site.id not in sites:
            continue
        state: dict[str, str] = {}
        for r in rows:
            if r["site"] != site.id:
                continue
            now = (
                ("drill" if r["drill"] else "alarm")
                if r["alarm"]
                else ("open" if r["status"] == "open" else "acknowledged")
            )
            if rank[now] > rank.get(state.get(r["building"], ""), 0):
                state[r["building"]] = now
        buildings = sorted(known.get(site.id, set()), key=_building_order)
        strip.append({"site": site, "buildings": [(b, state.get(b, "quiet")) for b in buildings]})
    lang = language(request)
    return console.env.get_template("site_strip.html").render(strip=strip, w=words(lang))


def _building_order(name: str) -> tuple[int, str]:
    digits = re.sub(r"\D", "", name)
    return (int(digits) if digits else 1 << 30, name)


def alarms(console: Console, request: web.Request) -> list[dict[str, Any]]:
    """The unacknowledged life-safety incidents of the account's sites (all of them,
    whatever page it is on): what every page shows at its top."""
    sites = granted(request)
    return [r for r in console.board if r["alarm"] and (sites is None or r["site"] in sites)]


def banner(console: Console, request: web.Request) -> str:
    return _rows(console, request, "banner.html", alarms(console, request))


def _rows(console: Console, request: web.Request, name: str, rows: list[dict[str, Any]]) -> str:
    sess: accounts.Session = request["session"]
    lang = language(request)
    return console.env.get_template(name).render(
        rows=rows,
        w=words(lang),
        lang=lang,
        names=may(sess.user.role, "names"),
        sites={s.id: s.name for s in console.sites} if console.sites.several else {},
    )


async def incident_page(console: Console, request: web.Request) -> web.StreamResponse:
    sess: accounts.Session = request["session"]
    role = sess.user.role
    number = incident_number(request)
    limit = None if request.query.get("all") else PAGE_ROWS

    def gather(conn: Conn) -> dict[str, Any] | None:
        from alertd.incidents import allclear

        found = incidents_db.find(conn, number)
        if found is None:
            return None
        still = sorted(
            c for c in json.loads(found["active"] or "[]") if not c.startswith(BY_PEOPLE)
        )
        held = still and found["status"] in ("resolved", "closed") and not found["all_clear_sent"]
        clear = (
            allclear.preview(conn, console.config, console.playbooks(), number, "") if held else []
        )
        roll = views.roll_call(conn, number, role)
        doors = views.door_checks(conn, found, role)
        return {
            "still_active": still,
            "all_clear": clear if isinstance(clear, list) else [],
            "incident": found,
            "timeline": views.timeline(conn, number, role),
            "deliveries": views.deliveries(conn, number, role, limit),
            "counts": messages_db.progress(conn, number),
            "limit": limit,
            "roll": roll,
            "doors": doors,
            "building": building_svg(console, conn, found, roll, doors, language(request)),
        }

    # 20 desks on the same fire read it once a second, not 20 times: each read holds a
    # snapshot of the store, and snapshots held all the time keep SQLite from ever
    # restarting its WAL (every commit of the daemon then pays a partial checkpoint)
    # ... unless the incident changed: an action, a note, a reply (not a delivery receipt)
    # the building picture's words are the page's: one shared read per language
    version = await console.read(incidents_db.version, number)
    key = (number, role, limit, language(request), version)
    context = await console.pages.get(key, lambda: console.read(gather))
    if context is None:
        raise web.HTTPNotFound(text=f"no incident {number}")
    return console.render(
        request, "incident.html", context["incident"]["site"], done=dict(request.query), **context
    )


def building_svg(
    console: Console,
    conn: Conn,
    incident: dict[str, Any],
    roll: views.RollCall,
    doors: list[dict[str, Any]],
    lang: str,
) -> str:
    """The incident's building as a stack of floors (alertd/console/building.py)."""
    if not incident["building"]:
        return ""
    answers = {
        r["unit"]: state
        for state, rows in (("safe", roll.safe), ("need_help", roll.need_help))
        for r in rows
        if r["building"] == incident["building"]
    }
    joined = {
        str(r["device_id"]): stamp(parse_iso(r["at"]), console.tz)[11:16]
        for r in dict_rows(
            conn,
            "SELECT e.device_id, t.at FROM timeline t JOIN events e ON e.id = t.event_id "
            "WHERE t.incident_id = ? AND t.type = 'join'",
            (incident["id"],),
        )
    }
    drawn = building.picture(conn, incident, console.devices()[0], doors, answers, joined)
    return building.svg(drawn, words(lang))


async def directory_page(
    console: Console,
    request: web.Request,
    problems: list[str] | None,
    summary: str = "",
    preview: Plan | None = None,
    nonce: str = "",
) -> web.StreamResponse:
    role: Role = request["session"].user.role
    building = request.query.get("building", "")
    sites = shown(console, request)
    found = await console.read(partial(views.residents, sites=sites), role, building)
    staff_rows: list[dict[str, Any]] = []
    try:
        staff = console.staff()
    except InvalidInput as exc:  # shown with file:line, as `alertd check` says it
        problems = [*(problems or []), *(str(p) for p in exc.problems)]
        staff = None
    if staff is not None:
        now = console.now()
        on_call = {role_: staff.on_call(role_, now) for role_ in staff.oncall}
        for name, person in staff.people.items():
            if sites is not None and not any(staff.covers(name, s) for s in sites):
                continue
            staff_rows.append(
                {
                    "name": name if may(role, "names") else "—",
                    "roles": ", ".join(person.roles),
                    "phone": person.phone
                    if may(role, "staff_phones")
                    else views.phone(person.phone, role),
                    "on_call": ", ".join(r for r, who in on_call.items() if who == name),
                }
            )
    page = paged(request, found, ("building", "floor", "unit", "name", "notes"))
    return console.render(
        request,
        "directory.html",
        residents=page.rows,
        paging=page,
        staff=staff_rows,
        problems=problems,
        summary=summary,
        building=building,
        preview=preview,
        nonce=nonce,
        site_choices=choices(console, request),
        site=request.query.get("site", ""),
    )


def period_of(console: Console, request: web.Request) -> analytics.Period:
    default = analytics.month_of(console.now(), console.tz)
    q = request.query

    def day(key: str, fallback: datetime, plus: int = 0) -> datetime:
        text = q.get(key, "")
        if not text:
            return fallback
        try:
            local = datetime.fromisoformat(text).replace(tzinfo=console.tz)
        except ValueError:
            raise web.HTTPBadRequest(text=f"{key}: a date like 2026-11-01, not {text!r}") from None
        return (local + timedelta(days=plus)).astimezone(UTC)

    return analytics.Period(
        day("from", default.start),
        day("until", default.end, 1),
        q.get("building", ""),
        shown(console, request),
    )


def run_analytics(
    conn: Conn, console: Console, period: analytics.Period
) -> dict[str, analytics.Table]:
    books = console.playbooks()
    leaks = {n for n, b in books.items() if Kind.LEAK in b.match.kinds}
    targets = {n: b.ack_target_s for n, b in books.items() if b.ack_target_s is not None}
    only = console.sites.only.id if console.sites.only else ""
    config = console.config
    device_sites = {
        **{name: p.place.site or only for name, p in config.panels.items()},
        **{
            f"sia:{number}": a.place.site or only
            for r in config.receivers.values()
            for number, a in r.accounts.items()
        },
        **{d.device_id: d.location.site for d in console.devices()[0]},
    }
    return analytics.analyse(conn, period, console.tz, leaks, targets, device_sites)


def make_app(console: Console) -> web.Application:
    app = web.Application(
        middlewares=[headers, error_pages(console), authenticate(console)],
        client_max_size=MAX_BODY,
    )
    app.add_routes(routes(console))

    async def start(app: web.Application) -> Any:
        task = asyncio.create_task(console.watch())
        yield
        task.cancel()
        console.close()

    async def end_streams(app: web.Application) -> None:
        await console.end_streams()

    app.cleanup_ctx.append(start)
    app.on_shutdown.append(end_streams)
    return app
