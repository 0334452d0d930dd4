"""`alertd users ...`, `alertd audit` and `alertd web`."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from alertd.cli_store import writable
from alertd.config import Config
from alertd.console import accounts
from alertd.console.audit import cli_actor, record
from alertd.console.roles import Role
from alertd.store import Reader

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    return str(click.prompt("password", hide_input=True, confirmation_prompt=True))


def _staff_member(config: Config, staff: str, role: Role) -> str:
    """Accounts that act are someone of the staff file: their name goes on the timeline."""
    from alertd.directory.cli import person

    if not staff:
        if role is Role.VIEWER:
            return ""
        raise click.BadParameter(
            f"a {role} account acts as a staff member: name one", param_hint="--staff"
        )
    return person(config, staff, "--staff")


def register(
    main: click.Group,
    config_option: Decorator,
    load: Callable[[Path], Config],
    store_of: Callable[[Config], Reader],
) -> None:
    @main.group()
    def users() -> None:
        """Console accounts: add, disable, enable, reset, list (changes are audited)."""

    @users.command("add")
    @config_option
    @click.argument("name")
    @click.option("--role", type=click.Choice([r.value for r in Role]), required=True)
    @click.option("--staff", default="", help="The staff member the account acts as.")
    @click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
    @click.option(
        "--sites", default="all", show_default=True, help="The sites it sees: ids, or all."
    )
    def add(
        config_path: Path, name: str, role: str, staff: str, password_stdin: bool, sites: str
    ) -> None:
        config = load(config_path)
        granted = _granted(config, sites)
        who = _staff_member(config, staff, Role(role))
        password = _password(password_stdin)
        store = writable(config)
        now = datetime.now(UTC)
        try:
            user = accounts.add_user(store.conn, name, Role(role), who, password, now, granted)
        except accounts.AccountError as exc:
            raise click.ClickException(str(exc)) from None
        what = f"{name}: role {role}, staff {who or '-'}, sites {_listed(granted)}"
        record(store.conn, cli_actor(), "user_add", what, now)
        click.echo(f"account {user.name} ({user.role}{', acts as ' + who if who else ''}) added")

    @users.command("sites")
    @config_option
    @click.argument("name")
    @click.argument("sites")
    def grant(config_path: Path, name: str, sites: str) -> None:
        """Grant NAME the SITES it sees and acts on (ids, comma-separated, or all); its
        sessions end."""
        config = load(config_path)
        granted = _granted(config, sites)
        store = writable(config)
        now = datetime.now(UTC)
        try:
            accounts.grant_sites(store.conn, name, granted, now)
        except accounts.AccountError as exc:
            raise click.ClickException(str(exc)) from None
        record(store.conn, cli_actor(), "user_sites", f"{name}: sites {_listed(granted)}", now)
        click.echo(f"account {name} sees {_listed(granted)}")

    for verb, help_text in (
        ("disable", "Disable an account; its sessions end at once."),
        ("enable", "Enable a disabled account."),
        ("reset", "Set a new password; the account's sessions end."),
    ):
        _account_change(users, verb, help_text, config_option, load)

    @users.command("list")
    @config_option
    def list_(config_path: Path) -> None:
        store = store_of(load(config_path))
        for u in accounts.users(store.conn):
            state = " DISABLED" if u.disabled else ""
            click.echo(f"{u.name:<20} {u.role:<10} {u.staff or '-':<16} {_listed(u.sites)}{state}")

    @main.command()
    @config_option
    @click.option("--since", default=None, help="An age (2h, 7d) or an ISO time.")
    @click.option("--who", default=None)
    @click.option("--incident", type=int, default=None)
    @click.option("--limit", type=int, default=200, show_default=True)
    def audit(
        config_path: Path, since: str | None, who: str | None, incident: int | None, limit: int
    ) -> None:
        """The audit trail: who did what, when, from where (console, CLI, SMS)."""
        from alertd.cli import _since
        from alertd.engine.wording import stamp
        from alertd.store.accounts import audit as rows

        config = load(config_path)
        store = store_of(config)
        tz = config.site.tz
        found = rows(
            store.conn,
            since=_since(since, tz) if since else None,
            who=who,
            incident=incident,
            limit=limit,
        )
        for r in found:
            at = stamp(datetime.fromisoformat(r["at"]), tz)
            os_user = f" ({r['os_user']})" if r["os_user"] else ""
            about = f" #{r['incident_id']}" if r["incident_id"] else ""
            click.echo(
                f"{at} {r['who']}{os_user} via {r['via']} {r['remote'] or '-'}: "
                f"{r['action']}{about} {r['detail']}"
            )

    @main.command()
    @config_option
    @click.option("--port", type=int, default=None, help="Overrides console.port.")
    def web(config_path: Path, port: int | None) -> None:
        """Serve the duty desk and supervisor console (console.host:console.port)."""
        import asyncio

        from aiohttp import web as aioweb

        from alertd import logs
        from alertd.console.web import Console, make_app

        config = load(config_path)
        logs.setup(config.log_level, config.site.tz, config.log_format)
        writable(config, create=False).close()  # alertd made it; its tables are there
        os.nice(config.console.nice)
        host = config.console.host
        port = config.console.port if port is None else port
        click.echo(f"alertd console on http://{host}:{port}/ (accounts: alertd users add)")
        asyncio.run(_serve(aioweb, make_app(Console(config)), host, port))


async def _serve(aioweb: Any, app: Any, host: str, port: int) -> None:
    import asyncio
    import signal

    runner = aioweb.AppRunner(app, access_log=None)
    await runner.setup()
    await aioweb.TCPSite(runner, host, port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def _account_change(
    group: click.Group,
    verb: str,
    help_text: str,
    config_option: Decorator,
    load: Callable[[Path], Config],
) -> None:
    @group.command(verb, help=help_text)
    @config_option
    @click.argument("account")
    @click.option("--password-stdin", is_flag=True, help="reset: read the password from stdin.")
    def command(config_path: Path, account: str, password_stdin: bool) -> None:
        store = writable(load(config_path))
        now = datetime.now(UTC)
        try:
            if verb == "reset":
                accounts.reset_password(store.conn, account, _password(password_stdin), now)
            else:
                accounts.set_disabled(store.conn, account, verb == "disable", now)
        except accounts.AccountError as exc:
            raise click.ClickException(str(exc)) from None
        record(store.conn, cli_actor(), f"user_{verb}", account, now)
        click.echo(f"account {account}: {verb} done")


def _granted(config: Config, text: str) -> frozenset[str] | None:
    """`all`, or site ids (names are taken too) that must be configured."""
    from alertd.sites import sites_of

    if text.strip().lower() == "all":
        return None
    sites = sites_of(config)
    try:
        return frozenset(sites.find(part.strip()).id for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="SITES") from None


def _listed(sites: frozenset[str] | None) -> str:
    return "all sites" if sites is None else ", ".join(sorted(sites))
