"""Requests to alertd's callback URLs that are not the provider's (a wrong signature or
token): refused, counted, and logged at most once a minute, so a flood of them costs
neither memory nor log lines."""

from __future__ import annotations

import asyncio
import logging
from typing import NoReturn

from aiohttp import web

log = logging.getLogger(__name__)

#: forged requests are logged at most once in this many seconds, with a count
LOG_EVERY_S = 60.0


class Forgeries:
    def __init__(self, what: str) -> None:
        self._what = what
        self._count = 0
        self._logged = -LOG_EVERY_S

    def refuse(self, request: web.Request) -> NoReturn:
        self._count += 1
        now = asyncio.get_running_loop().time()
        if now - self._logged >= LOG_EVERY_S:
            log.warning(
                "rejected %d request(s) with a missing or wrong %s in the last %g s "
                "(latest: %s from %s)",
                self._count,
                self._what,
                LOG_EVERY_S,
                request.path,
                request.remote,
            )
            self._count, self._logged = 0, now
        raise web.HTTPForbidden(text=f"invalid {self._what}")
