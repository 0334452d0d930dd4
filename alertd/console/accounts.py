"""Console accounts and their sessions in the store. Passwords are argon2id hashes; a
session cookie carries a random token whose SHA-256 alone is stored, so a copy of the
store signs nobody in."""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from alertd.console.roles import Role
from alertd.store.sqlite import iso, parse_iso

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

_COLUMNS = "id, name, role, staff, disabled, sites"


def add_user(
    conn: sqlite3.Connection,
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
        cur = conn.execute(
            "INSERT INTO users (name, role, staff, password_hash, created_at, updated_at, "
            "sites) VALUES (?,?,?,?,?,?,?)",
            (name, str(role), staff, _hasher.hash(password), iso(now), iso(now), _stored(sites)),
        )
    except sqlite3.IntegrityError:
        raise AccountError(f"there is already an account {name!r}") from None
    return User(int(cur.lastrowid or 0), name, role, staff, False, sites)


def _stored(sites: frozenset[str] | None) -> str:
    return ALL_SITES if sites is None else ",".join(sorted(sites))


def grant_sites(
    conn: sqlite3.Connection, name: str, sites: frozenset[str] | None, now: datetime
) -> User:
    """The sites an account sees from now on; its sessions end (it signs in again)."""
    user = _existing(conn, name)
    if sites is not None and not sites:
        raise AccountError("grant the account at least one site (or all of them)")
    conn.execute(
        "UPDATE users SET sites = ?, updated_at = ? WHERE id = ?",
        (_stored(sites), iso(now), user.id),
    )
    conn.execute("DELETE FROM web_sessions WHERE user_id = ?", (user.id,))
    return user


def users(conn: sqlite3.Connection) -> list[User]:
    return [_user(r) for r in conn.execute(f"SELECT {_COLUMNS} FROM users ORDER BY name")]


def find_user(conn: sqlite3.Connection, name: str) -> User | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM users WHERE name = ?", (name,)).fetchone()
    return _user(row) if row else None


def _existing(conn: sqlite3.Connection, name: str) -> User:
    user = find_user(conn, name)
    if user is None:
        known = ", ".join(u.name for u in users(conn)) or "none yet"
        raise AccountError(f"no account {name!r} (accounts: {known})")
    return user


def set_disabled(conn: sqlite3.Connection, name: str, disabled: bool, now: datetime) -> User:
    """Disabling also ends the account's sessions at once."""
    user = _existing(conn, name)
    conn.execute(
        "UPDATE users SET disabled = ?, updated_at = ? WHERE id = ?",
        (int(disabled), iso(now), user.id),
    )
    if disabled:
        conn.execute("DELETE FROM web_sessions WHERE user_id = ?", (user.id,))
    return user


def reset_password(conn: sqlite3.Connection, name: str, password: str, now: datetime) -> User:
    """A new password ends the account's sessions (a stolen cookie stops working)."""
    check_password(password)
    user = _existing(conn, name)
    conn.execute(
        "UPDATE users SET password_hash = ?, updated_at = ? WHERE id = ?",
        (_hasher.hash(password), iso(now), user.id),
    )
    conn.execute("DELETE FROM web_sessions WHERE user_id = ?", (user.id,))
    return user


def verify(conn: sqlite3.Connection, name: str, password: str) -> User | None:
    """The account if the password is right and the account enabled. A missing account
    costs a hash too, so the answer's time does not tell which names exist."""
    row = conn.execute(
        f"SELECT {_COLUMNS}, password_hash FROM users WHERE name = ?", (name,)
    ).fetchone()
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


def open_session(conn: sqlite3.Connection, user: User, remote: str, now: datetime) -> str:
    """A new session; returns the token for the cookie."""
    token = secrets.token_urlsafe(32)
    conn.execute("DELETE FROM web_sessions WHERE expires_at < ?", (iso(now),))
    conn.execute(
        "INSERT INTO web_sessions (token_hash, user_id, csrf, created_at, expires_at, remote) "
        "VALUES (?,?,?,?,?,?)",
        (
            _digest(token),
            user.id,
            secrets.token_urlsafe(32),
            iso(now),
            iso(now + SESSION_TTL),
            remote,
        ),
    )
    return token


def session(conn: sqlite3.Connection, token: str, now: datetime) -> Session | None:
    """The live session of an enabled account with this token, or None."""
    row = conn.execute(
        f"SELECT {', '.join('u.' + c.strip() for c in _COLUMNS.split(','))}, s.csrf, "
        "s.expires_at FROM web_sessions s JOIN users u ON u.id = s.user_id "
        "WHERE s.token_hash = ?",
        (_digest(token),),
    ).fetchone()
    if row is None or row[4] or parse_iso(row[7]) <= now:
        return None
    return Session(_user(row[:6]), row[6], parse_iso(row[7]))


def close_session(conn: sqlite3.Connection, token: str) -> None:
    conn.execute("DELETE FROM web_sessions WHERE token_hash = ?", (_digest(token),))
