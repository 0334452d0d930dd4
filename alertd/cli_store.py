"""The store as the commands open it: on either engine, with one clear line (naming the
store, never its password) when it is missing or cannot be opened."""

from __future__ import annotations

from typing import NoReturn

import click

from alertd.config import Config
from alertd.store import Reader, StoreError
from alertd.store.events import Events
from alertd.store.stores import Missing


def reader(config: Config, *, missing_ok: bool = False) -> Reader:
    """The store, read-only: one clear line when it is missing or cannot be read
    (`missing_ok`: Missing raised for the caller instead)."""
    try:
        return config.storage.reader()
    except Missing as exc:
        if missing_ok:
            raise
        _missing(exc)
    except StoreError as exc:
        click.echo(f"error: cannot read the store at {config.storage.where}: {exc}", err=True)
        raise SystemExit(2) from None


def writable(config: Config, *, create: bool = True) -> Events:
    """The store, for writing: one clear line when it cannot be opened (`create`: made
    when missing, else refused: a command that only uses what alertd made)."""
    try:
        return config.storage.open(create=create)
    except Missing as exc:
        _missing(exc)
    except StoreError as exc:
        raise click.ClickException(
            f"cannot write the store at {config.storage.where}: {exc}"
        ) from None


def _missing(exc: Missing) -> NoReturn:
    """No store yet: said in one line, exit 2 (as every command that needs one)."""
    click.echo(f"error: {exc}", err=True)
    raise SystemExit(2) from None
