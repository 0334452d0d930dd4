"""Links in staff texts to an incident's phone page: signed, expiring, and bound to the
incident and the staff member. The link alone acknowledges that incident as that person
and nothing else; signed in, the page does the rest. The key is made once and kept in
the store (the daemon writes links, the console checks them: both read it there)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from alertd.store import Conn
from alertd.store.sql import transaction

#: how long a link works: past a night shift, not for ever
TTL = timedelta(hours=24)
#: bytes of the signature kept (96 bits: short enough for an SMS, never guessed)
SIGNATURE = 12
KEY_NAME = "phone_links"


@dataclass(frozen=True, slots=True)
class Grant:
    incident: int
    staff: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Links:
    def __init__(self, key: bytes, base_url: str) -> None:
        self._key = key
        self._base = base_url.rstrip("/")

    def token(self, incident: int, staff: str, now: datetime) -> str:
        expires = int((now + TTL).timestamp() // 60)
        payload = f"{incident}:{expires:x}:{staff}".encode()
        return f"{_b64(payload)}.{_b64(self._sign(payload))}"

    def url(self, incident: int, staff: str, now: datetime) -> str:
        return f"{self._base}/m/{self.token(incident, staff, now)}"

    def check(self, token: str, now: datetime) -> Grant | None:
        """The incident and person a token names, if it is ours and not expired."""
        payload_text, _, signature = token.partition(".")
        try:
            payload, sent = _unb64(payload_text), _unb64(signature)
            incident, expires, staff = payload.decode().split(":", 2)
            minutes = int(expires, 16)
        except (ValueError, UnicodeDecodeError):
            return None
        if not hmac.compare_digest(sent, self._sign(payload)):
            return None
        if now.timestamp() // 60 > minutes or not incident.isdigit() or not staff:
            return None
        return Grant(int(incident), staff)

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:SIGNATURE]


def link_key(conn: Conn) -> bytes:
    """The store's key for links, made the first time it is asked for."""
    with transaction(conn):
        conn.execute(
            "INSERT INTO secrets (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
            (KEY_NAME, secrets.token_hex(32)),
        )
        row = conn.execute("SELECT value FROM secrets WHERE name = ?", (KEY_NAME,)).fetchone()
    return bytes.fromhex(str(row[0]))
