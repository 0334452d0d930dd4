"""The `alertd` command."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import click

from alertd import logs
from alertd.cli_store import reader, writable
from alertd.config import Config, load_config, panel_problems
from alertd.problems import InvalidInput, Problem
from alertd.store import StoreError
from alertd.store import directory as directory_db
from alertd.store import incidents as incidents_db
from alertd.store.stores import Missing

if TYPE_CHECKING:
    from alertd.playbooks.loader import Playbooks
    from alertd.sites import Sites

DEFAULT_CONFIG = "config/alertd.yaml"
config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=DEFAULT_CONFIG,
    envvar="ALERTD_CONFIG",
    show_default=True,
    help="The configuration file.",
)


def _config(path: Path, *, secrets: bool = False) -> Config:
    """The configuration; `secrets`: the environment must give every `${VAR}` (the daemon,
    `check`). Commands that only read or hand work to the daemon need none."""
    try:
        return load_config(path, secrets=secrets)
    except InvalidInput as exc:
        for problem in exc.problems:
            click.echo(f"error: {problem}", err=True)
        raise SystemExit(2) from None


class _Commands(click.Group):
    """A store that fails under a command (the server gone, a disk error) is one line
    naming the failure, exit 2, not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except StoreError as exc:
            click.echo(f"error: the store failed: {exc}", err=True)
            raise SystemExit(2) from None


@click.group(cls=_Commands)
@click.version_option(package_name="alertd")
def main() -> None:
    """alertd: emergency alerts for residential property management."""


@main.command()
@config_option
def run(config_path: Path) -> None:
    """Run the daemon until SIGTERM or Ctrl-C."""
    from alertd.affinity import pin
    from alertd.daemon import CannotListen, Daemon
    from alertd.store.lock import AlreadyRunning

    config = _config(config_path, secrets=True)
    logs.setup(config.log_level, config.site.tz, config.log_format)
    pin(config.cpu)  # before the daemon starts its threads
    daemon = Daemon(config)
    try:
        asyncio.run(daemon.run())
    except AlreadyRunning as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(1) from None
    except CannotListen as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None
    except StoreError as exc:  # opening it; later the daemon holds and retries
        text = str(exc).strip()
        click.echo(f"error: cannot open the store at {config.storage.where}: {text}", err=True)
        raise SystemExit(2) from None
    if daemon.failed:
        raise SystemExit(1)


@main.command()
@config_option
def check(config_path: Path) -> None:
    """Validate the configuration, devices, profiles, playbooks and the staff file (and
    the one against the other); exit 1 on any problem."""
    from alertd.daemon import load_router
    from alertd.playbooks.audit import audit, templates
    from alertd.playbooks.loader import Playbooks, load_playbooks
    from alertd.sites import has_staff, load_company_staff, site_problems, sites_of

    config = _config(config_path, secrets=True)
    sites = sites_of(config)
    router, problems = load_router(config)
    problems += panel_problems(config, config_path) + site_problems(config, config_path)
    playbooks = load_playbooks(config.playbooks) if config.playbooks else Playbooks()
    own = {s.id: load_playbooks(s.playbooks) for s in sites if s.playbooks is not None}
    for books in (playbooks, *own.values()):
        problems += books.problems + templates(books, datetime.now(UTC))
    if has_staff(config):
        try:
            staff = load_company_staff(config)
        except InvalidInput as exc:
            problems += exc.problems
        else:
            for site in sites:
                at = site.id if sites.several else None
                mine = own.get(site.id, Playbooks())
                shared = Playbooks(
                    {n: b for n, b in playbooks.enabled.items() if n not in mine.enabled},
                    lines=playbooks.lines,
                )
                for books in (shared, mine):
                    problems += audit(
                        books, staff, "the staff file", datetime.now(UTC), at, site.tz
                    )
    problems += _stored_residents(config, sites)
    problems += _registered(config, sites, playbooks, own, config_path)
    if _texts_phones(config) and _loopback(config.console.public_url):
        click.echo(
            f"warning: {config_path}: console.public_url is {config.console.public_url}: the "
            "link in each staff text opens only on this machine; set it to the address "
            "staff phones reach",
            err=True,
        )
    for problem in problems:
        click.echo(f"error: {problem}", err=True)
    accounts = sum(len(r.accounts) for r in config.receivers.values())
    click.echo(
        f"{config_path}: {len(router.devices)} devices usable, {len(config.profiles)} "
        f"configured profiles, {len(config.panels)} panels, {len(config.receivers)} receivers "
        f"({accounts} accounts), {len(playbooks.enabled)} playbooks, "
        + (f"{len(sites)} sites, " if sites.several else "")
        + f"{len(problems)} problem(s)"
    )
    if problems:
        raise SystemExit(1)


def _texts_phones(config: Config) -> bool:
    return any(p is not None for p in (config.twilio, config.aliyun, config.tencent))


def _loopback(url: str) -> bool:
    from urllib.parse import urlsplit

    return (urlsplit(url).hostname or "") in ("127.0.0.1", "localhost", "::1")


def _registered(
    config: Config, sites: Sites, shared: Playbooks, own: dict[str, Playbooks], where: Path
) -> list[Problem]:
    """Every playbook SMS text against each site's providers' registered templates; what
    a resident reads for each is shown."""
    from alertd.outbox.caps import cap_warnings
    from alertd.outbox.registered import for_sites, unregistered
    from alertd.playbooks.loader import Playbooks

    by_provider, problems = for_sites(sites)
    limits = {"aliyun": config.aliyun, "tencent": config.tencent}
    for site in sites:
        books = {**shared.enabled, **own.get(site.id, Playbooks()).enabled}
        for by_site in by_provider.values():
            if site.id not in by_site:
                continue
            found, shown = unregistered(by_site[site.id], books, site.id, str(where))
            problems += found
            for line in shown:
                click.echo(line)
        caps = {
            name: provider.per_number_day
            for name, provider in limits.items()
            if provider is not None and name in site.providers
        }
        for warning in cap_warnings(books, caps, site.id):
            click.echo(f"warning: {where}: {warning}", err=True)
    return problems


def _stored_residents(config: Config, sites: Sites) -> list[Problem]:
    """Residents in the store of no configured site: nobody would ever text them."""
    try:
        store = config.storage.reader()
        try:
            counts = directory_db.counts_by_site(store.conn).items()
        finally:
            store.close()
    except StoreError:
        return []  # none yet, or yesterday's schema: the daemon makes or migrates it
    return [
        Problem(
            config.storage.where,
            f"{n} resident(s) of no site, stored before sites: import them again with --site"
            if not site
            else f"{n} resident(s) of site {site!r}, which is not configured: never texted",
        )
        for site, n in counts
        if site not in sites.ids and not (not site and sites.only is not None)
    ]


@main.command()
@config_option
@click.option("--since", help="ISO time (site time zone if no offset) or an age: 30m, 2h, 7d.")
@click.option("--kind", "kinds", multiple=True, help="Only these kinds (repeatable).")
@click.option("--limit", type=int, help="At most this many events.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line, oldest first.")
def events(
    config_path: Path, since: str | None, kinds: tuple[str, ...], limit: int | None, as_json: bool
) -> None:
    """List stored events, oldest first, times in the site's time zone."""
    config = _config(config_path)
    tz = config.site.tz
    store = reader(config)
    for row in store.events(since=_since(since, tz) if since else None, kinds=kinds, limit=limit):
        row = _localise(row, tz, ("occurred_at", "received_at"))
        row["tags"], row["drill"] = json.loads(row["tags"]), bool(row["drill"])
        row.pop("decided", None)
        if as_json:
            click.echo(json.dumps(row, ensure_ascii=False))
        else:
            where = "/".join(row[k] for k in ("building", "floor", "unit", "zone") if row[k])
            click.echo(
                f"{row['id']:>6} {row['occurred_at']} {row['kind']:<18} {row['state']:<7} "
                f"{row['severity']:<8} {row['device_id']} {where} {row['detail']}".rstrip()
            )


@main.command()
@config_option
def status(config_path: Path) -> None:
    """Ask the running daemon how each part is: exit 0 healthy (or a standby that is
    well), 1 degraded or failing, 3 not running."""
    from alertd.store.lock import InstanceLock

    config = _config(config_path)
    if config.http is None:
        running = InstanceLock(config.storage.path).held_by()
        if running is None:
            click.echo("alertd is not running")
            raise SystemExit(3)
        click.echo(f"alertd runs (pid {running}); add an http: section to ask it how it is")
        return
    body = _health(config)
    if isinstance(body, str):
        click.echo(f"alertd is not running ({body})")
        raise SystemExit(3) from None
    click.echo(f"alertd: {body['status']}")
    for part in body["parts"]:
        click.echo(f"  {part['name']:<24} {part['state']:<9} {part['detail']}".rstrip())
    if body["status"] not in ("ok", "standby"):  # a standby that is well is as it should be
        raise SystemExit(1)


def _health(config: Config) -> dict[str, Any] | str:
    """What the running daemon's /healthz says, or why nothing answered."""
    import urllib.error
    import urllib.request

    if config.http is None:
        return "no http: section to ask it"
    host = "127.0.0.1" if config.http.host in ("0.0.0.0", "::", "") else config.http.host
    url = f"http://{host}:{config.http.port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            body: dict[str, Any] = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        body = json.loads(exc.read())
    except (urllib.error.URLError, OSError):
        return f"nothing answers at {url}"
    return body


@main.command()
@config_option
def sites(config_path: Path) -> None:
    """The sites this alertd serves: their devices, residents, staff, broker, open
    incidents, and how each is (from the running daemon, when it answers)."""
    from alertd.daemon import load_router
    from alertd.sites import has_staff, load_company_staff, sites_of

    config = _config(config_path)
    served = sites_of(config)
    router, _ = load_router(config)
    devices: dict[str, int] = {}
    for device in router.devices:
        devices[device.location.site] = devices.get(device.location.site, 0) + 1
    try:
        staff = load_company_staff(config) if has_staff(config) else None
    except InvalidInput:
        staff = None
    residents: dict[str, int] = {}
    incidents: dict[str, int] = {}
    with contextlib.suppress(Missing):
        store = reader(config, missing_ok=True)
        try:
            residents = directory_db.counts_by_site(store.conn)
            incidents = incidents_db.unclosed_by_site(store.conn)
        finally:
            store.close()
    health = _health(config)
    states = health.get("sites", {}) if isinstance(health, dict) else {}
    click.echo(
        f"{'SITE':<14} {'NAME':<18} {'ZONE':<16} {'DEVICES':>7} {'RESIDENTS':>9} "
        f"{'STAFF':>5} {'OPEN':>4}  {'BROKER':<21} STATE"
    )
    for site in served:
        people = sum(staff.covers(n, site.id) for n in staff.people) if staff else 0
        click.echo(
            f"{site.id:<14} {site.name[:18]:<18} {site.tz!s:<16} {devices.get(site.id, 0):>7} "
            f"{residents.get(site.id, 0):>9} {people:>5} {incidents.get(site.id, 0):>4}  "
            f"{site.mqtt.host + ':' + str(site.mqtt.port):<21} {states.get(site.id, '-')}"
        )
    if isinstance(health, str):
        click.echo(f"(state: alertd is not answering: {health})", err=True)


@main.command()
@config_option
@click.argument("dest", type=click.Path(dir_okay=False, path_type=Path))
def backup(config_path: Path, dest: Path) -> None:
    """Copy the store to DEST, consistent while alertd runs (SQLite online backup)."""
    from alertd.store.upkeep import backup as copy

    config = _config(config_path)
    if config.storage.url is not None:
        raise click.ClickException(
            "storage.url: back PostgreSQL up with its own tools (pg_dump, or pg_basebackup "
            "and WAL archiving for a point in time); `alertd store copy` makes a SQLite copy"
        )
    reader(config).close()  # exists and is readable: one clear line if not
    if dest.exists():
        raise click.ClickException(f"{dest} exists: give a new file")
    pages = copy(config.storage.path, dest)
    click.echo(f"{dest}: {pages} pages, integrity ok")


@main.command()
@config_option
@click.option("--dry-run", is_flag=True, help="Count what would go; delete nothing.")
def prune(config_path: Path, dry_run: bool) -> None:
    """Delete closed and resolved incidents older than storage.keep_incidents_days (never
    younger), and raw events and dead letters older than storage.keep_events_days that no
    kept incident refers to."""
    from alertd.store.upkeep import prune as run

    config = _config(config_path)
    store = writable(config, create=False)
    try:
        done = run(
            store.conn,
            datetime.now(UTC),
            config.storage.keep_incidents_days,
            config.storage.keep_events_days,
            dry_run=dry_run,
        )
    finally:
        store.close()
    verb = "would delete" if dry_run else "deleted"
    click.echo(
        f"{verb}: {done.incidents} incident(s) older than {config.storage.keep_incidents_days} "
        f"days, {done.events} event(s) and {done.dead_letters} dead letter(s) older than "
        f"{config.storage.keep_events_days} days"
    )


@main.command("dead-letters")
@config_option
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def dead_letters(config_path: Path, limit: int, as_json: bool) -> None:
    """Messages that could not be used, newest last, with the reason."""
    config = _config(config_path)
    store = reader(config)
    for row in store.dead_letters(limit=limit):
        row = _localise(row, config.site.tz, ("received_at",))
        payload = bytes(row.pop("payload")).decode("utf-8", "replace")
        if as_json:
            click.echo(json.dumps({**row, "payload": payload}, ensure_ascii=False))
        else:
            shown = payload if len(payload) <= 120 else payload[:117] + "..."
            click.echo(f"{row['id']:>6} {row['received_at']} {row['topic']}: {row['reason']}")
            click.echo(f"       payload ({row['size']} bytes): {shown}")
    counters = store.counters()
    if not as_json:
        click.echo(f"dead letters stored in total: {counters.get('dead_letters', 0)}", err=True)


@main.command()
@config_option
def cluster(config_path: Path) -> None:
    """The instances sharing a PostgreSQL store, the sites each owns, lease ages and
    takeovers."""
    import psycopg

    from alertd.cluster import SERVICE
    from alertd.sites import sites_of
    from alertd.store import leases as db
    from alertd.store.postgres import shown

    config = _config(config_path)
    if config.storage.url is None:
        click.echo(
            f"one box: the store is SQLite ({config.storage.path}); storage.url selects "
            "PostgreSQL, shared by several instances"
        )
        return
    url = config.storage.url.get_secret_value()

    async def read() -> tuple[list[db.Instance], list[db.Lease]]:
        import psycopg

        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            return await db.instances(conn), await db.leases(conn)

    try:
        members, leases = asyncio.run(read())
    except psycopg.Error as exc:
        raise click.ClickException(f"{shown(url)}: {str(exc).strip()}") from None
    owned: dict[str, list[str]] = {}
    for lease in leases:
        if lease.held and lease.owner:
            owned.setdefault(lease.owner, []).append(lease.site)
    click.echo(f"{'INSTANCE':<28} {'PID':>7} {'HEARD':>8}  SITES")
    for m in members:
        heard = "stopping" if m.stopping else f"{m.age_s:.1f}s ago"
        sites = owned.get(m.id, [])
        click.echo(f"{m.id[:28]:<28} {m.pid:>7} {heard:>8}  {len(sites)}: {' '.join(sites)}")
    click.echo(f"\n{'SITE':<14} {'OWNER':<28} {'EPOCH':>5} {'LEASE':>8} {'TAKEOVERS':>9} HANDOVERS")
    for lease in leases:
        left = f"{lease.left_s:.1f}s" if lease.held else "expired"
        owner = lease.owner or "-"
        click.echo(
            f"{lease.site:<14} {owner[:28]:<28} {lease.epoch:>5} {left:>8} "
            f"{lease.takeovers:>9} {lease.handovers}"
        )
    held = {le.site for le in leases if le.held}
    unowned = [] if SERVICE in held else sorted({s.id for s in sites_of(config)} - held)
    if unowned:
        click.echo(f"\nno owner: {', '.join(unowned)}", err=True)


@main.group()
def store() -> None:
    """The store itself: move it between SQLite and PostgreSQL."""


@store.command("copy")
@click.argument("source", metavar="FROM")
@click.argument("dest", metavar="TO")
def store_copy(source: str, dest: str) -> None:
    """Copy the store FROM into the new, empty store TO, checked row for row before it is
    committed. Each is a SQLite file or a PostgreSQL connection string
    (postgresql://user@host/dbname; the password from PGPASSWORD or ~/.pgpass, not the
    command line). Stop alertd first: what it writes after the copy began stays behind."""
    from alertd.store.copy import CopyRefused, copy_store
    from alertd.store.lock import InstanceLock
    from alertd.store.postgres import is_postgres

    if not is_postgres(source):
        running = InstanceLock(Path(source)).held_by()
        if running:
            raise click.ClickException(f"alertd runs on {source} (pid {running}): stop it first")

    def shown(table: str, rows: int) -> None:
        click.echo(f"  {table}: {rows:,} rows", err=True)

    try:
        copied = copy_store(source, dest, progress=shown)
    except CopyRefused as exc:
        raise click.ClickException(str(exc)) from None
    total = sum(c.rows for c in copied)
    click.echo(f"copied {total:,} rows in {len(copied)} tables; every table checked row for row")


@main.group()
def simulate() -> None:
    """Replay a capture into a serial line or an alarm receiver (demos, wiring checks)."""


@simulate.command("serial")
@click.option(
    "--link",
    type=click.Path(path_type=Path),
    required=True,
    help="Create a pseudo-terminal reachable at this path (point a panel's port here).",
)
@click.option("--delay", type=float, default=0.5, show_default=True, help="Seconds between lines.")
@click.option(
    "--ending", type=click.Choice(["crlf", "lf", "cr"]), default="crlf", show_default=True
)
@click.option(
    "--hold/--no-hold",
    default=True,
    show_default=True,
    help="Keep the line open after the capture (until Ctrl-C).",
)
@click.option(
    "--repeat",
    type=click.FloatRange(0.1, 3600),
    default=None,
    help="While holding, send the capture's last line again every this many seconds "
    "(a keypad's status line: the panel stays heard).",
)
@click.argument("capture", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def simulate_serial(
    link: Path, delay: float, ending: str, hold: bool, repeat: float | None, capture: Path
) -> None:
    """Write CAPTURE's lines to a new pseudo-terminal at LINK, as a panel would."""
    import os
    import time

    from integrations.panels import simulate as sim

    fd = sim.open_pty_link(link)
    click.echo(f"serial line ready at {link}; waiting 2 s for alertd to open it")
    time.sleep(2)
    bytes_ending = {"crlf": b"\r\n", "lf": b"\n", "cr": b"\r"}[ending]
    lines = sim.capture_lines(capture)
    sim.write_lines(fd, lines, bytes_ending, delay, lambda line: click.echo(f"> {line}"))
    if hold:
        click.echo("capture sent; holding the line open (Ctrl-C to close it)")
        try:
            while True:
                time.sleep(repeat or 3600)
                if repeat and lines:
                    sim.write_lines(fd, lines[-1:], bytes_ending, 0, lambda _line: None)
        except KeyboardInterrupt:
            pass
    os.close(fd)


@simulate.command("dc09")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=12128, show_default=True)
@click.option("--udp", is_flag=True, help="Send over UDP instead of TCP.")
@click.option("--key", envvar="SIA_KEY", help="AES key in hex, to send encrypted frames.")
@click.argument("capture", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def simulate_dc09(host: str, port: int, udp: bool, key: str | None, capture: Path) -> None:
    """Send CAPTURE's lines (`ADM-CID 1234 1110 01 015`, `SIA-DCS 1234 Nri1/FA015`,
    `NULL 1234`) as SIA DC-09 frames and print each answer."""
    from integrations.panels import simulate as sim

    frames = sim.dc09_frames(sim.capture_lines(capture), bytes.fromhex(key) if key else None)
    answers = asyncio.run(sim.send_dc09(host, port, frames, udp=udp))
    for frame, answer in zip(frames, answers, strict=True):
        click.echo(f"> {frame.strip().decode()}\n< {answer.strip().decode()}")


_AGE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")


def _since(text: str, tz: ZoneInfo) -> datetime:
    match = _AGE.match(text.strip())
    if match:
        seconds = float(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
        return datetime.now(UTC) - timedelta(seconds=seconds)
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is neither an ISO time nor an age like 2h") from None
    return at.replace(tzinfo=tz) if at.tzinfo is None else at


def _localise(row: dict[str, Any], tz: ZoneInfo, keys: tuple[str, ...]) -> dict[str, Any]:
    for key in keys:
        row[key] = datetime.fromisoformat(row[key]).astimezone(tz).isoformat()
    return row


def _register() -> None:
    from alertd.console.cli import register as register_console
    from alertd.directory.cli import register as register_directory
    from alertd.incidents.cli import register

    register(main, config_option, _config, reader)
    register_console(main, config_option, _config, reader)
    register_directory(main, config_option, _config, reader)


_register()

if __name__ == "__main__":
    main(sys.argv[1:])
