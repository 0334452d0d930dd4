"""The MQTT source: messages in, reports (or rejections) out to the ingest pipeline."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable

from alertd.clock import Clock
from alertd.ingest.report import Receipt, Rejected, Report
from integrations.mqtt.client import Incoming
from integrations.mqtt.profiles import PayloadError
from integrations.mqtt.router import Router

SOURCE = "mqtt"
log = logging.getLogger(__name__)


class MqttSource:
    def __init__(
        self,
        router: Router,
        submit: Callable[[Report | Rejected], None],
        ack: Callable[[int, int], None],
        clock: Clock,
        *,
        client_id: str,
        max_payload_bytes: int,
        site: str = "",
    ) -> None:
        """`site`: the one site this broker serves, if it serves one (its dead letters')."""
        self.site = site
        self.router = router
        self._submit = submit
        self._ack = ack
        self._clock = clock
        self._client_id = client_id
        self._max_payload = max_payload_bytes
        #: messages ignored on purpose (bridge chatter); everything else is a report or rejected
        self.ignored = 0

    def handle(self, msg: Incoming) -> None:
        now = self._clock.now()
        receipt = self._receipt(msg)
        if len(msg.payload) > self._max_payload:
            self._submit(
                Rejected(
                    SOURCE,
                    f"payload of {len(msg.payload)} bytes is over mqtt.max_payload_bytes "
                    f"({self._max_payload})",
                    now,
                    msg.topic,
                    msg.payload,
                    receipt=receipt,
                    site=self.site,
                )
            )
            return
        routed = self.router.route(msg.topic)
        if routed is None:
            if self.router.ignored(msg.topic):
                self.ignored += 1
                if receipt is not None:
                    receipt.ack()
                return
            self._submit(
                Rejected(
                    SOURCE,
                    "unknown device: no row of the devices file owns this topic",
                    now,
                    msg.topic,
                    msg.payload,
                    receipt=receipt,
                    site=self.site,
                )
            )
            return
        targets, base, suffix = routed
        parts = receipt.split(len(targets)) if receipt else [None] * len(targets)
        raw = msg.payload.decode("utf-8", "replace")
        for (device, profile), part in zip(targets, parts, strict=True):
            try:
                decoded = profile.decode(device, base, suffix, msg.payload)
            except Exception as exc:
                if not isinstance(exc, PayloadError):
                    log.exception("profile %s failed on %r", profile.name, msg.topic)
                self._submit(
                    Rejected(
                        SOURCE,
                        f"{profile.name}: {exc}"
                        if isinstance(exc, PayloadError)
                        else f"{profile.name}: could not read it ({type(exc).__name__}); kept "
                        "for inspection",
                        now,
                        msg.topic,
                        msg.payload,
                        device.device_id,
                        receipt=part,
                    )
                )
                continue
            self._submit(
                Report(
                    source=SOURCE,
                    device=device,
                    observations=decoded.observations,
                    received_at=now,
                    occurred_at=decoded.occurred_at,
                    values=decoded.values,
                    # a retained message is old news, not a sign of life
                    alive=decoded.alive and not msg.retain,
                    raw=raw,
                    topic=msg.topic,
                    problems=tuple(f"{profile.name}: {p}" for p in decoded.problems),
                    receipt=part,
                )
            )

    def _receipt(self, msg: Incoming) -> Receipt | None:
        if msg.qos == 0:
            return None
        digest = hashlib.blake2b(
            msg.topic.encode() + b"\0" + msg.payload, digest_size=12
        ).hexdigest()
        return Receipt(
            ack=lambda: self._ack(msg.mid, msg.connection),
            key=f"{SOURCE}:{self._client_id}:{msg.mid}",
            digest=digest,
            redelivered=msg.dup,
        )
