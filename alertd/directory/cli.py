"""`alertd residents import|list` and `alertd oncall`."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from alertd.cli_store import writable
from alertd.config import Config
from alertd.console.audit import cli_actor, record
from alertd.directory import importing
from alertd.directory.phones import mask
from alertd.directory.residents import read_residents
from alertd.problems import InvalidInput
from alertd.sites import has_staff, load_company_staff, sites_of
from alertd.store import Reader
from alertd.store import directory as directory_db

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def person(config: Config, name: str, hint: str) -> str:
    """`name` must be a person of the staff file (any name when there is none): what goes
    on the timeline is someone the site knows."""
    if not has_staff(config):
        return name
    try:
        people = load_company_staff(config).people
    except InvalidInput as exc:
        raise click.ClickException(f"the staff file is broken: {exc.problems[0]}") from None
    if name not in people:
        raise click.BadParameter(
            f"{name!r} is not in the staff files (people: {', '.join(sorted(people))})",
            param_hint=hint,
        )
    return name


def reveal(config: Config, what: str) -> None:
    """Full numbers on screen: audited first (refused if the audit cannot be written)."""
    from alertd.console.audit import cli_reveal

    try:
        cli_reveal(config, what)
    except PermissionError as exc:
        raise click.ClickException(str(exc)) from None


def register(
    main: click.Group,
    config_option: Decorator,
    load: Callable[[Path], Config],
    open_store: Callable[[Config], Reader],
) -> None:
    @main.group()
    def residents() -> None:
        """The residents directory (phone numbers masked unless --show-phones)."""

    @residents.command("import")
    @config_option
    @click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @click.option("--dry-run", is_flag=True, help="Say what would change; change nothing.")
    @click.option(
        "--allow-removals",
        is_flag=True,
        help="Move out more than 5% of the residents (those the file no longer lists).",
    )
    @click.option(
        "--site",
        default="",
        help="The site the file is the directory of (rows may name theirs in a site column).",
    )
    def import_(
        config_path: Path, csv_file: Path, dry_run: bool, allow_removals: bool, site: str
    ) -> None:
        """Import or re-import FILE.csv, which replaces the directory: residents it no longer
        lists are moved out. Bad rows are reported and skipped (nobody in their unit is
        moved out); a file that cannot be read as a whole changes nothing. UTF-8 (with or
        without BOM), GB18030/GBK and UTF-16; commas, semicolons or tabs. Only residents
        of the sites the file is for are moved out."""
        config = load(config_path)
        sites = sites_of(config)
        try:
            site_of = sites.resident_site(sites.find(site).id if site else "")
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--site") from None
        found = read_residents(csv_file, config.site.country, site=site_of)
        for problem in found.problems:
            click.echo(f"error: {problem}", err=True)
        for warning in found.warnings:
            click.echo(f"warning: {warning}", err=True)
        store = writable(config)
        try:
            if sites.only is not None:
                directory_db.claim_residents(store.conn, sites.only.id)
            if dry_run:
                click.echo(f"dry run: {importing.plan(store.conn, found).summary()}")
                return
            try:
                done = importing.apply(
                    store.conn, found, datetime.now(UTC), allow_removals=allow_removals
                )
            except importing.NeedsConfirmation as exc:
                raise click.ClickException(
                    f"{exc}; nothing was changed (run again with --allow-removals to do it)"
                ) from None
            record(store.conn, cli_actor(), "import_residents", done.summary(), datetime.now(UTC))
        finally:
            store.close()
        click.echo(done.summary())
        if found.problems:
            raise SystemExit(1)

    @residents.command("list")
    @config_option
    @click.option("--site", default=None, help="Only this site's (id or name).")
    @click.option("--building", default=None)
    @click.option("--flagged", is_flag=True, help="Only those texts do not reach, and why.")
    @click.option("--show-phones", is_flag=True, help="Show full phone numbers (personal data).")
    @click.option("--json", "as_json", is_flag=True)
    def list_(
        config_path: Path,
        site: str | None,
        building: str | None,
        flagged: bool,
        show_phones: bool,
        as_json: bool,
    ) -> None:
        """Residents: vulnerable ones, opted-out (STOP) and undeliverable numbers marked,
        with why."""
        config = load(config_path)
        store = open_store(config)
        if show_phones:
            reveal(config, f"residents list --show-phones {building or 'all buildings'}")
        sites = sites_of(config)
        try:
            only = [sites.find(site).id] if site else None
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--site") from None
        shown = 0
        for row in directory_db.listing(
            store.conn, sites=only, building=building or "", flagged=flagged
        ):
            del row["id"]
            shown += 1
            row["phone"] = row["phone"] if show_phones else mask(row["phone"])
            if as_json:
                click.echo(json.dumps(row, ensure_ascii=False))
                continue
            flags = ("  vulnerable" if row["vulnerable"] else "") + (
                "  opted out (replied STOP)" if row["opted_out"] else ""
            )
            if row["undeliverable"]:
                flags += f"  undeliverable: {row['undeliverable']}"
            click.echo(
                (f"{row['site']:<12} " if sites.several else "")
                + f"{row['building']:>4} {row['unit']:>6} {row['name']:<16} "
                f"{row['phone']:<18} {row['language']}{flags}"
            )
        if not as_json:
            click.echo(f"{shown} resident(s)", err=True)

    @residents.command("clear")
    @config_option
    @click.argument("phone")
    def clear(config_path: Path, phone: str) -> None:
        """Text PHONE again: clears an undeliverable flag (after a number was fixed, or a
        provider error was taken for the number's). A STOP is the resident's to undo."""
        from alertd.directory.phones import normalise

        config = load(config_path)
        try:
            number = normalise(phone, config.site.country)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="PHONE") from None
        store = writable(config)
        try:
            cleared = directory_db.clear_undeliverable(store.conn, number)
        finally:
            store.close()
        if not cleared:
            raise click.ClickException(f"no undeliverable flag on {mask(number)}")
        click.echo(
            f"{mask(number)}: flag cleared on {cleared} entr{'y' if cleared == 1 else 'ies'}"
        )

    @main.command()
    @config_option
    @click.option("--at", "at", default=None, help="ISO time (site zone if no offset); now.")
    @click.option("--site", default=None, help="Only this site (id or name); all of them.")
    @click.option("--show-phones", is_flag=True, help="Show full phone numbers.")
    def oncall(config_path: Path, at: str | None, site: str | None, show_phones: bool) -> None:
        """Who is on call now (or at --at), per role, at each site."""
        config = load(config_path)
        if not has_staff(config):
            raise click.ClickException("the configuration names no staff file (staff:)")
        try:
            staff = load_company_staff(config)
        except InvalidInput as exc:
            for problem in exc.problems:
                click.echo(f"error: {problem}", err=True)
            raise SystemExit(2) from None
        sites = sites_of(config)
        try:
            shown = [sites.find(site)] if site else list(sites)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--site") from None
        for place in shown:
            when = datetime.now(UTC)
            if at:
                parsed = datetime.fromisoformat(at)
                when = parsed if parsed.tzinfo else parsed.replace(tzinfo=place.tz)
            title = f"{place.name}: " if sites.several else ""
            click.echo(f"{title}on call at {when.astimezone(place.tz):%Y-%m-%d %H:%M %Z}:")
            team = staff.teams.get(place.id)
            roles = {
                r for n, p in staff.people.items() for r in p.roles if staff.covers(n, place.id)
            }
            roles |= set(staff.oncall) | set(team.rota.oncall if team else ())
            for role in sorted(roles):
                who = staff.on_call(role, when, place.id)
                if who is None:
                    holders = ", ".join(staff.with_role(role, place.id)) or "-"
                    click.echo(f"  {role:<12} nobody (role: {holders})")
                    continue
                phone = staff.people[who].phone
                click.echo(f"  {role:<12} {who:<14} {phone if show_phones else mask(phone)}")
