"""What a sink is: it sends one message and says how it went. It never retries or
sleeps: the dispatcher's retry stage decides."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol


@dataclass(frozen=True, slots=True)
class Message:
    id: int
    channel: str
    recipient: str
    body: str
    language: str
    #: seconds the message is still worth delivering (Twilio ValidityPeriod)
    valid_for_s: int | None = None
    #: this is attempt number ...
    attempts: int = 1
    #: the incident it is about (a voice call's keypad acknowledges this one)
    incident: int | None = None
    #: lower goes first (alertd/outbox/expand.py)
    priority: int = 10
    #: the incident's site, whose sender it goes out from
    site: str = ""
    #: the playbook template its text came from, and that text's values in the
    #: recipient's language (set for SMS when a provider has registered templates)
    template: str = ""
    values: Mapping[str, str] | None = None
    drill: bool = False

    @property
    def urgent(self) -> bool:
        """A staff alert of a life-safety incident (alertd/outbox/expand.py `priority`)."""
        return self.priority < 10


@dataclass(frozen=True, slots=True)
class Result:
    """How one send went. `throttled` and `unavailable` are about the provider, not the
    message: the lane pauses (429: for Retry-After) or stops (bad credentials, a closed
    account) and the message waits, its attempt not counted."""

    outcome: Literal["sent", "retryable", "permanent", "throttled", "unavailable"]
    reason: str = ""
    provider_id: str = ""
    retry_after_s: float | None = None
    #: the number itself cannot be reached (Twilio 21211, 21614, 21610, ...): kept on
    #: the directory entry, so later alerts leave it out and `residents list` says why
    flag: str = ""
    #: this provider did not send it and will not (the number's cap there for today, no
    #: registered template there): the next provider may, whoever it is for; not flagged
    elsewhere: bool = False
    #: the request went out and no answer came: the provider may have sent it
    unknown: bool = False
    #: sent by a later provider than the first: the timeline says why
    moved: bool = False


class Sink(Protocol):
    async def send(self, message: Message) -> Result: ...

    async def close(self) -> None: ...


class ConsoleSink:
    """The demo's sink: prints what would be sent (numbers masked)."""

    def __init__(self, echo: Callable[[str], object] = print) -> None:
        self._echo = echo

    async def send(self, message: Message) -> Result:
        from alertd.directory.phones import mask

        to = mask(message.recipient) if message.recipient.startswith("+") else message.recipient
        self._echo(f"[{message.channel} to {to}] {message.body}")
        return Result("sent", provider_id=f"console-{message.id}")

    async def close(self) -> None:
        return None
