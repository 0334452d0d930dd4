"""`alertd incidents ...`, `alertd declare`, `alertd drill`, `alertd report`, `alertd replay`."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from alertd.cli_store import writable
from alertd.config import Config
from alertd.engine.wording import stamp
from alertd.events import Kind
from alertd.incidents import inputs
from alertd.incidents.report import markdown
from alertd.incidents.sentences import name_the_reached
from alertd.sites import sites_of
from alertd.store import Reader, StoreError
from alertd.store import incidents as db
from alertd.store import messages as messages_db

ALIASES = {
    "fire": "fire.alarm",
    "smoke": "fire.alarm",
    "power": "power.loss",
    "water": "leak",
    "flood": "leak",
}


def _command(
    config: Config, command: str, incident: int | None, by: str, text: str, args: dict[str, Any]
) -> None:
    """Hand a command to the daemon (the one place incidents change) and wait for it; the
    audit trail records the staff name and the login that typed it."""
    from alertd.console.audit import cli_actor
    from alertd.incidents.commands import run_command

    store = writable(config, create=False)  # made by the daemon, not by a command
    try:
        outcome = run_command(store.conn, command, incident, cli_actor(by), text, args)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    except StoreError as exc:
        message = f"cannot write the command to the store at {config.storage.where}: {exc}"
        raise click.ClickException(message) from None
    finally:
        store.close()
    if outcome.state == "failed":
        raise click.ClickException(outcome.result)
    if outcome.state == "queued":
        click.echo(
            f"{command}: queued as command {outcome.command_id}; it is applied when alertd runs",
            err=True,
        )
        raise SystemExit(3)
    click.echo(f"{command}: done{': ' + outcome.result if outcome.result else ''}")


def _checked(check: Callable[[str], Any], value: str) -> Any:
    """A value checked as every door checks it (alertd/incidents/inputs.py)."""
    try:
        return check(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _actor(config: Config, by: str) -> str:
    """Staff actions name a person of the staff file (the daemon checks again)."""
    from alertd.directory.cli import person

    if not by.strip():
        raise click.BadParameter("name who does it", param_hint="--by")
    return person(config, by, "--by")


Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]
Load = Callable[[Path], Config]
StoreOf = Callable[[Config], Reader]


def register(main: click.Group, config_option: Decorator, load: Load, store_of: StoreOf) -> None:
    @main.group()
    def incidents() -> None:
        """Incidents: list, show, acknowledge, add notes, resolve."""

    @incidents.command("list")
    @config_option
    @click.option(
        "--status",
        type=click.Choice(["open", "acknowledged", "resolved", "closed", "all"]),
        default="all",
        show_default=True,
    )
    @click.option("--site", default="", help="Only this site's (id or name).")
    @click.option("--json", "as_json", is_flag=True)
    def list_(config_path: Path, status: str, site: str, as_json: bool) -> None:
        config: Config = load(config_path)
        sites = sites_of(config)
        store = store_of(config)
        try:
            only = sites.find(site).id if site else None
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--site") from None
        rows = db.listing(store.conn, status=None if status == "all" else status, site=only)
        for row in rows:
            if as_json:
                click.echo(json.dumps(row, ensure_ascii=False))
            else:
                drill = " DRILL" if row["drill"] else ""
                zone = sites.zone(row["site"]) or config.site.tz
                opened = stamp(datetime.fromisoformat(row["opened_at"]), zone)
                at = f"{row['site']:<10} " if sites.several else ""
                click.echo(
                    f"{row['id']:>5} {at}{row['status']:<12} {row['severity']:<8} "
                    f"{opened} {row['title']}{drill}"
                )

    @incidents.command("show")
    @config_option
    @click.argument("incident_id", type=int)
    @click.option("--json", "as_json", is_flag=True)
    def show(config_path: Path, incident_id: int, as_json: bool) -> None:
        config: Config = load(config_path)
        store = store_of(config)
        incident, timeline, outbox = _incident(store, incident_id)
        progress = messages_db.progress(store.conn, incident_id)
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "incident": incident,
                        "timeline": timeline,
                        "outbox": outbox,
                        "messages": progress,
                    },
                    ensure_ascii=False,
                )
            )
            return
        zone = sites_of(config).zone(incident["site"]) or config.site.tz
        click.echo(markdown(incident, timeline, outbox, zone), nl=False)
        click.echo(f"\nMessages: {_progress(progress)}")

    @main.command()
    @config_option
    @click.option("--pending", "which", flag_value="pending", help="Only what waits to be sent.")
    @click.option("--failed", "which", flag_value="failed", help="Only what failed or expired.")
    @click.option("--limit", type=int, default=50, show_default=True)
    @click.option("--show-phones", is_flag=True, help="Full phone numbers (personal data).")
    def outbox(config_path: Path, which: str | None, limit: int, show_phones: bool) -> None:
        """Delivery lanes that are stopped or paused, then messages waiting or failed and
        why (phone numbers masked unless --show-phones)."""
        from alertd.directory.phones import mask

        config = load(config_path)
        store = store_of(config)
        if show_phones:
            from alertd.directory.cli import reveal

            reveal(config, "outbox --show-phones")
        states = {"pending": ("pending", "sending"), "failed": ("failed", "expired")}.get(
            which or "", ("pending", "sending", "failed", "expired")
        )
        rows = messages_db.waiting_or_failed(store.conn, states, limit)
        for channel, state, why, since in messages_db.lanes(store.conn):
            if state != "ok":
                at = stamp(datetime.fromisoformat(since), config.site.tz)
                click.echo(f"LANE {channel} {state.upper()} since {at}: {why}")
        for mid, incident, channel, recipient, status, attempts, reason, due in rows:
            to = mask(recipient) if recipient.startswith("+") and not show_phones else recipient
            click.echo(
                f"{mid:>7} incident {incident:<5} {channel:<8} {to:<18} {status:<8} "
                f"tries {attempts}  "
                f"{reason or ('due ' + stamp(datetime.fromisoformat(due), config.site.tz))}"
            )
        totals = messages_db.totals(store.conn)
        click.echo(f"all messages: {_progress(totals)}", err=True)

    for name, help_text, confirms in (
        ("ack", "Acknowledge: stops the escalation.", False),
        ("note", "Add a note to the timeline.", False),
        ("resolve", "Resolve: the all-clear goes out and the follow-up is scheduled.", True),
        ("close", "Close: the record is complete.", True),
    ):
        _staff_command(incidents, name, help_text, config_option, load, confirms=confirms)

    @incidents.command("all-clear")
    @config_option
    @click.argument("incident_id", type=int)
    @click.option("--by", "by", required=True, help="Who sends it.")
    @click.option("--text", default="", help="Why, e.g. the sensor is broken and dry")
    @click.option("--yes", is_flag=True, help="Send without asking (the texts are printed).")
    def all_clear(config_path: Path, incident_id: int, by: str, text: str, yes: bool) -> None:
        """Send the all-clear yourself: what it says is shown first. For a detector that
        will not clear, or a restore that never comes."""
        from alertd.incidents import allclear
        from alertd.playbooks.loader import load_playbooks

        config: Config = load(config_path)
        store = store_of(config)
        books = dict(load_playbooks(config.playbooks).enabled) if config.playbooks else {}
        found = allclear.preview(store.conn, config, books, incident_id, by)
        if isinstance(found, str):
            raise click.ClickException(found)
        for line in allclear.lines(found) or [
            "(no message: the all-clear only goes on the timeline)"
        ]:
            click.echo(line)
        if not yes:
            click.confirm("Send this all-clear now?", abort=True)
        _command(config, "all_clear", incident_id, _actor(config, by), text, {})

    @incidents.command("eta")
    @config_option
    @click.argument("incident_id", type=int)
    @click.option(
        "--in",
        "minutes",
        callback=lambda _ctx, _param, value: _checked(inputs.eta_minutes, value),
        required=True,
        help="Minutes from now until service is expected back.",
    )
    @click.option("--by", "by", required=True)
    @click.option("--text", default="", help="e.g. what the power company said")
    def eta(config_path: Path, incident_id: int, minutes: float, by: str, text: str) -> None:
        """Set the expected restore time; residents are updated as the playbook says."""
        config: Config = load(config_path)
        _command(config, "eta", incident_id, _actor(config, by), text, {"minutes": minutes})

    @main.command()
    @config_option
    @click.argument("kind")
    @_place_options
    @click.option("--by", "by", required=True, help="Who declares it.")
    @click.option("--text", default="", help="The caller's description.")
    def declare(config_path: Path, kind: str, by: str, text: str, **place: str) -> None:
        """Declare an emergency by hand (a phone call): it runs the matching playbook."""
        kind = ALIASES.get(kind, kind)
        try:
            Kind(kind)
        except ValueError:
            raise click.BadParameter(f"unknown kind {kind!r}", param_hint="KIND") from None
        config: Config = load(config_path)
        _event_command(config, "declare", _actor(config, by), text, kind, place)

    @main.command()
    @config_option
    @click.argument("playbook")
    @_place_options
    @click.option("--by", "by", required=True)
    def drill(config_path: Path, playbook: str, by: str, **place: str) -> None:
        """Run a real playbook on a synthetic event marked as a drill (演练 / DRILL)."""
        from alertd.playbooks.loader import load_playbooks

        config: Config = load(config_path)
        books = load_playbooks(config.playbooks) if config.playbooks else None
        if books is None or playbook not in books.enabled:
            raise click.BadParameter(f"no enabled playbook {playbook!r}", param_hint="PLAYBOOK")
        kind = books.enabled[playbook].match.kinds[0].value
        by = _actor(config, by)
        _event_command(config, "drill", by, f"drill of {playbook}", kind, place)

    @main.command()
    @config_option
    @click.argument("incident_id", type=int)
    @click.option(
        "--format", "fmt", type=click.Choice(["md", "html"]), default="md", show_default=True
    )
    @click.option("--lang", type=click.Choice(["zh", "en"]), default="zh", show_default=True)
    def report(config_path: Path, incident_id: int, fmt: str, lang: str) -> None:
        """The incident report: time, place, measures taken and by whom, messages."""
        from alertd.playbooks.loader import load_playbooks

        config: Config = load(config_path)
        store = store_of(config)
        incident, timeline, outbox = _incident(store, incident_id)
        books = load_playbooks(config.playbooks).enabled if config.playbooks else {}
        if fmt == "html":  # the page the console serves
            from alertd.console.render import report_html

            click.echo(report_html(store.conn, config, incident_id, lang, books), nl=False)
            return
        times = db.event_times(store.conn, incident_id)
        playbook = books.get(incident["playbook"])
        target = playbook.ack_target_s if playbook else None
        zone = sites_of(config).zone(incident["site"]) or config.site.tz
        click.echo(markdown(incident, timeline, outbox, zone, target, times), nl=False)

    @main.command()
    @config_option
    @click.argument("events", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    def replay(config_path: Path, events: Path) -> None:
        """Run EVENTS (JSON lines, as `alertd events --json` prints) through the playbooks
        in simulated time and print every action; nothing is sent or stored."""
        from alertd.daemon import make_engine
        from alertd.engine.replay import parse_event
        from alertd.engine.replay import replay as run
        from alertd.playbooks.loader import load_playbooks

        config: Config = load(config_path)
        if config.playbooks is None:
            raise click.ClickException("the configuration names no playbooks folder")
        books = load_playbooks(config.playbooks)
        for problem in books.problems:
            click.echo(f"warning: playbook disabled: {problem}", err=True)
        lines = events.read_text(encoding="utf-8").splitlines()
        try:
            parsed = [parse_event(line, n) for n, line in enumerate(lines, 1) if line.strip()]
        except ValueError as exc:
            raise click.ClickException(f"{events}: {exc}") from None
        tz = config.site.tz
        for step in run(parsed, make_engine(config, books.enabled)):
            a = step.action
            click.echo(
                f"{stamp(step.at, tz)} incident {step.incident} "
                f"{a.channel} -> {a.target}: {a.texts['zh']} | {a.texts['en']}"
            )


def _staff_command(
    group: click.Group,
    name: str,
    help_text: str,
    config_option: Decorator,
    load: Load,
    *,
    confirms: bool = False,
) -> None:
    """A staff action on one incident; `confirms` (resolve, close): a detector still in
    alarm needs --force and a reason."""

    def command(
        config_path: Path,
        incident_id: int,
        by: str,
        text: str,
        force: bool = False,
        reason: str = "",
    ) -> None:
        if force and not reason.strip():
            raise click.BadParameter("say why (it goes on the timeline)", param_hint="--reason")
        config = load(config_path)
        args = {"force": True} if force else {}
        _command(config, name, incident_id, _actor(config, by), reason or text, args)

    options = [
        config_option,
        click.argument("incident_id", type=int),
        click.option("--by", "by", required=True, help="Who does it."),
        click.option("--text", default=""),
    ]
    if confirms:
        options += [
            click.option("--force", is_flag=True, help="Even with a detector still in alarm."),
            click.option("--reason", default="", help="Why, with --force (on the timeline)."),
        ]
    for option in reversed(options):
        command = option(command)
    group.command(name, help=help_text)(command)


def _progress(counts: dict[str, int]) -> str:
    order = ("sent", "delivered", "pending", "sending", "failed", "expired")
    parts = [f"{counts.get(s, 0)} {s}" for s in order if counts.get(s)]
    return ", ".join(parts) or "none"


def _place_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Where the declared (or drilled) emergency is (`--site`: with several sites)."""
    command = click.option("--site", default="", help="The site (id or name).")(command)
    for name, required in (("zone", False), ("unit", False), ("floor", False), ("building", True)):
        command = click.option(f"--{name}", required=required, default=None if required else "")(
            command
        )
    return command


def _event_command(
    config: Config, name: str, by: str, text: str, kind: str, place: dict[str, str]
) -> None:
    """Ask the daemon to make an event (each gets a device of its own: a new incident)."""
    try:
        site = sites_of(config).find(place.get("site", "")).id
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--site") from None
    place = {**place, "site": site}
    args = {"kind": kind, **place, "command": f"{by}-{int(time.time() * 1000)}"}
    _command(config, name, None, by, text, args)


def _incident(
    store: Reader, incident_id: int
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    found = db.find(store.conn, incident_id)
    if found is None:
        raise click.ClickException(f"no incident {incident_id}")
    timeline = db.timeline(store.conn, incident_id)
    name_the_reached(timeline, messages_db.staff_reached(store.conn, incident_id))
    return found, timeline, messages_db.actions_with_totals(store.conn, incident_id)
