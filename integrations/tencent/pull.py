"""Tencent's delivery statuses and replies (上行短信), pulled (PullSmsSendStatus,
PullSmsReplyStatus: alertd needs no public address for them), turned into alertd's
values and handed to alertd/outbox/inbound.py.

Tencent hands each status and reply out once: they are committed before the next pull.
Tencent cannot send a free-text answer (every text needs a registered template): replies
are recorded and acted on, not answered."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from alertd.outbox.inbound import Inbound, Receipt
from integrations.tencent.sink import provider_id

log = logging.getLogger(__name__)

#: the most either pull returns at once (Tencent's limit)
LIMIT = 100


def receipt(status: Any) -> Receipt | None:
    """A PullSmsSendStatus entry; None without the serial number that names it."""
    serial = str(status.SerialNo or "")
    if not serial:
        return None
    delivered = status.ReportStatus == "SUCCESS"
    said = str(status.Description or "")
    return Receipt(
        provider_id(serial),
        "delivered" if delivered else "failed",
        f"Tencent {status.ReportStatus}" + (f" ({said})" if said else ""),
        "",
        "tencent",
    )


class TencentPull:
    def __init__(self, client: Any, sdk_app_id: str, inbound: Inbound, every_s: float) -> None:
        self._client = client
        self._app = sdk_app_id
        self._inbound = inbound
        self._every_s = every_s

    async def run(self) -> None:
        while True:
            try:
                await self.once()
            except Exception as exc:  # Tencent unreachable: the next round tries again
                log.warning("could not pull Tencent's statuses and replies: %s", exc)
            await asyncio.sleep(self._every_s)

    async def once(self) -> int:
        """One round, pulling until Tencent has no more; returns how many were taken.
        Each pull is committed before the next (what Tencent handed out is not lost
        when the second pull fails)."""
        taken = 0
        while True:
            statuses = await asyncio.to_thread(self._pull, "PullSmsSendStatus")
            await self._inbound.receipts(r for s in statuses if (r := receipt(s)) is not None)
            for status in statuses:
                if receipt(status) is None:
                    await self._inbound.refused(
                        "tencent", "PullSmsSendStatus", "no SerialNo", str(status).encode()
                    )
            replies = await asyncio.to_thread(self._pull, "PullSmsReplyStatus")
            for reply in replies:
                phone = str(reply.PhoneNumber or "")
                if not phone:
                    await self._inbound.refused(
                        "tencent", "PullSmsReplyStatus", "no PhoneNumber", str(reply).encode()
                    )
                    continue
                await self._inbound.text(phone, str(reply.ReplyContent or ""), "Tencent")
            taken += len(statuses) + len(replies)
            if len(statuses) < LIMIT and len(replies) < LIMIT:
                return taken

    def _pull(self, action: str) -> list[Any]:
        from tencentcloud.sms.v20210111 import models

        request = getattr(models, f"{action}Request")()
        request.Limit, request.SmsSdkAppId = LIMIT, self._app
        return list(getattr(getattr(self._client, action)(request), f"{action}Set") or [])
