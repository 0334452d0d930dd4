"""The MQTT source: messages in, reports (or rejections) out to the ingest pipeline."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from alertd.clock import Clock
from alertd.ingest.report import Receipt, Rejected, Report
from integrations.mqtt.client import Incoming
from integrations.mqtt.profiles import PayloadError
from integrations.mqtt.router import Router

SOURCE = "mqtt"


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
    ) -> None:
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
                )
            )
            return
        targets, base, suffix = routed
        acks = _CountDown(len(targets), receipt)
        raw = msg.payload.decode("utf-8", "replace")
        for i, (device, profile) in enumerate(targets):
            part = acks.part(receipt if i == 0 else None)
            try:
                decoded = profile.decode(device, base, suffix, msg.payload)
            except PayloadError as exc:
                self._submit(
                    Rejected(
                        SOURCE,
                        f"{profile.name}: {exc}",
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


class _CountDown:
    """One message read by several devices is acknowledged when all of them are stored."""

    def __init__(self, parts: int, receipt: Receipt | None) -> None:
        self._left = parts
        self._receipt = receipt

    def part(self, dedup: Receipt | None) -> Receipt | None:
        if self._receipt is None:
            return None
        if self._left == 1 and dedup is not None:
            return dedup
        return Receipt(
            ack=self._one_done,
            key=dedup.key if dedup else "",
            digest=dedup.digest if dedup else "",
            redelivered=dedup.redelivered if dedup else False,
        )

    def _one_done(self) -> None:
        self._left -= 1
        if self._left == 0 and self._receipt is not None:
            self._receipt.ack()
