"""Console accounts and their sessions in the store. Passwords are argon2id hashes; a
session cookie carries a random token whose SHA-256 alone is stored, so a copy of the
store signs nobody in."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from alertd.console.roles import Role
from alertd.store import Conn
from alertd.store import accounts as accounts_db
from alertd.store.sql import parse_iso

#: a session lasts a shift; then the desk signs in again
SESSION_TTL = timedelta(hours=12)
MIN_PASSWORD = 10

_hasher = PasswordHasher()


@dataclass(frozen=True, slots=True)
class User:
    id: int
    name: str
    role: Role
    #: the staff member this account acts as (their name goes on the timeline)
    staff: str
    disabled: bool
    #: the sites it sees and acts on (None: every site, head office)
    sites: frozenset[str] | None = None

    def sees(self, site: str) -> bool:
        return self.sites is None or site in self.sites


@dataclass(frozen=True, slots=True)
class Session:
    user: User
    csrf: str
    expires_at: datetime


class AccountError(ValueError):
    """A user change that cannot be made, said so that the admin can fix it."""


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"the password needs at least {MIN_PASSWORD} characters")


def _user(row: tuple[int, str, str, str, int, str]) -> User:
    return User(int(row[0]), row[1], Role(row[2]), row[3], bool(row[4]), _sites(row[5]))


def _sites(text: str) -> frozenset[str] | None:
    return None if text == ALL_SITES else frozenset(s for s in text.split(",") if s)


#: what an account granted every site stores
ALL_SITES = "*"


def add_user(
    conn: Conn,
    name: str,
    role: Role,
    staff: str,
    password: str,
    now: datetime,
    sites: frozenset[str] | None = None,
) -> User:
    """`sites`: the sites it is granted (None: every site)."""
    check_password(password)
    if not name.strip():
        raise AccountError("the account needs a name")
    if sites is not None and not sites:
        raise AccountError("grant the account at least one site (or all of them)")
    try:
        number = accounts_db.add_user(
            conn, name, str(role), staff, _hasher.hash(password), _stored(sites), now
        )
    except accounts_db.NameTaken:
        raise AccountError(f"there is already an account {name!r}") from None
    return User(number, name, role, staff, False, sites)


def _stored(sites: frozenset[str] | None) -> str:
    return ALL_SITES if sites is None else ",".join(sorted(sites))


def grant_sites(conn: Conn, name: str, sites: frozenset[str] | None, now: datetime) -> User:
    """The sites an account sees from now on; its sessions end (it signs in again)."""
    user = _existing(conn, name)
    if sites is not None and not sites:
        raise AccountError("grant the account at least one site (or all of them)")
    accounts_db.update_user(conn, user.id, now, sites=_stored(sites))
    accounts_db.end_sessions(conn, user.id)
    return user


def users(conn: Conn) -> list[User]:
    return [_user(r) for r in accounts_db.users(conn)]


def find_user(conn: Conn, name: str) -> User | None:
    row = accounts_db.user(conn, name)
    return _user(row[:6]) if row else None


def _existing(conn: Conn, name: str) -> User:
    user = find_user(conn, name)
    if user is None:
        known = ", ".join(u.name for u in users(conn)) or "none yet"
        raise AccountError(f"no account {name!r} (accounts: {known})")
    return user


def set_disabled(conn: Conn, name: str, disabled: bool, now: datetime) -> User:
    """Disabling also ends the account's sessions at once."""
    user = _existing(conn, name)
    accounts_db.update_user(conn, user.id, now, disabled=int(disabled))
    if disabled:
        accounts_db.end_sessions(conn, user.id)
    return user


def reset_password(conn: Conn, name: str, password: str, now: datetime) -> User:
    """A new password ends the account's sessions (a stolen cookie stops working)."""
    check_password(password)
    user = _existing(conn, name)
    accounts_db.update_user(conn, user.id, now, password_hash=_hasher.hash(password))
    accounts_db.end_sessions(conn, user.id)
    return user


def verify(conn: Conn, name: str, password: str) -> User | None:
    """The account if the password is right and the account enabled. A missing account
    costs a hash too, so the answer's time does not tell which names exist."""
    row = accounts_db.user(conn, name)
    stored = row[6] if row else _DUMMY
    try:
        _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return None
    if row is None or row[4]:
        return None
    return _user(row[:6])


_DUMMY = _hasher.hash("not a password of anyone")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def open_session(conn: Conn, user: User, remote: str, now: datetime) -> str:
    """A new session; returns the token for the cookie."""
    token = secrets.token_urlsafe(32)
    accounts_db.add_session(
        conn, _digest(token), user.id, secrets.token_urlsafe(32), now, now + SESSION_TTL, remote
    )
    return token


def session(conn: Conn, token: str, now: datetime) -> Session | None:
    """The live session of an enabled account with this token, or None."""
    row = accounts_db.session(conn, _digest(token))
    if row is None or row[4] or parse_iso(row[7]) <= now:
        return None
    return Session(_user(row[:6]), row[6], parse_iso(row[7]))


def close_session(conn: Conn, token: str) -> None:
    accounts_db.end_session(conn, _digest(token))
