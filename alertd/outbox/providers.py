"""SMS through several providers in order (`delivery.providers`, or a site's own): a
life-safety service must not depend on one.

A message goes to the first provider that is not stopped. What a provider could not send
at all goes on to the next, for anyone: an account error (the provider is stopped, loudly,
and tried again after `probe_s`), no registered template, the number's daily cap there.
A life-safety staff alert goes on to the next provider whatever the failure (5xx, a
timeout, a refused number), once, within the same send; when the first provider's outcome
is unknown (no answer after the request went out) the reason says so, and it is sent
anyway: a duplicate alert beats a missed one. A resident's text is never sent by a second
provider after an unknown outcome or a retryable failure: it is retried where it was (and
the provider's sink looks its earlier request up before sending again)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from alertd.clock import Clock
from alertd.outbox.sink import Message, Result, Sink

log = logging.getLogger(__name__)


class Providers:
    def __init__(
        self,
        sinks: Mapping[str, Sink],
        order: Sequence[str],
        clock: Clock,
        *,
        sites: Mapping[str, Sequence[str]] | None = None,
        timeout_s: float = 5.0,
        probe_s: float = 60.0,
    ) -> None:
        """`order`: the providers tried, by name; `sites`: a site's own order."""
        self.sinks = dict(sinks)
        self._order = list(order)
        self._sites = {site: list(names) for site, names in (sites or {}).items()}
        self._clock = clock
        self._timeout_s = timeout_s
        self._probe_s = probe_s
        #: provider -> (until when; why) while stopped by an account error
        self.stopped: dict[str, tuple[datetime, str]] = {}
        #: claims read each message's template values
        self.templated = any(getattr(s, "templated", False) for s in self.sinks.values())

    def order(self, site: str) -> list[str]:
        return self._sites.get(site) or self._order

    async def send(self, message: Message) -> Result:
        said: list[str] = []
        last: Result | None = None
        for name in self.order(message.site):
            held = self._held(name)
            if held:
                said.append(f"{name}: stopped ({held})")
                continue
            result = await self._try(name, message)
            if result.outcome == "sent":
                moved = bool(said)
                said += [f"sent by {name}", *([result.reason] if result.reason else [])]
                return dataclasses.replace(result, reason="; ".join(said), moved=moved)
            last = result
            said.append(f"{name}: {result.reason}")
            if result.outcome == "unavailable":
                self._stop(name, result.reason)
            elif not (message.urgent or result.elsewhere):
                return dataclasses.replace(result, reason="; ".join(said))
            elif result.unknown:
                said[-1] += " (it may have sent it: sent by the next provider anyway)"
        if last is None:
            return Result("unavailable", "; ".join(said) or "no SMS provider")
        if any(self._held(name) is None for name in self.order(message.site)):
            outcome = "retryable" if last.outcome == "unavailable" else last.outcome
            return dataclasses.replace(last, outcome=outcome, reason="; ".join(said))
        return dataclasses.replace(last, outcome="unavailable", reason="; ".join(said))

    async def _try(self, name: str, message: Message) -> Result:
        try:
            return await asyncio.wait_for(self.sinks[name].send(message), self._timeout_s)
        except TimeoutError:
            return Result("retryable", f"no answer within {self._timeout_s:g} s", unknown=True)
        except Exception as exc:  # a sink's bug must not keep the next provider from trying
            log.exception("SMS provider %s failed on message %d", name, message.id)
            return Result("retryable", f"{name} failed: {exc}")

    def _held(self, name: str) -> str | None:
        stop = self.stopped.get(name)
        if stop is None:
            return None
        until, why = stop
        if self._clock.now() >= until:  # a probe: the next message tries it
            del self.stopped[name]
            return None
        return why

    def _stop(self, name: str, why: str) -> None:
        if name not in self.stopped:
            log.error(
                "SMS provider %s stopped: %s; texts go by the next provider; tried again in %g s",
                name,
                why,
                self._probe_s,
            )
        self.stopped[name] = (self._clock.now() + timedelta(seconds=self._probe_s), why)

    def states(self) -> list[tuple[str, str, str]]:
        """Each provider's (name, ok | stopped, what to know): for health."""
        out = []
        for name, sink in self.sinks.items():
            why = self._held(name)
            caps = getattr(sink, "caps", None)
            capped = caps.capped() if caps is not None else 0
            detail = "; ".join(
                [
                    *([f"stopped: {why}"] if why else []),
                    *([f"{capped} number(s) at their daily cap here"] if capped else []),
                ]
            )
            out.append((name, "stopped" if why else "ok", detail))
        return out

    async def close(self) -> None:
        for sink in self.sinks.values():
            await sink.close()
