"""What an incoming SMS means: opt-out and opt-in words, help, a resident's check-in,
a staff member's acknowledgement. Pure, so that the words are tested one by one."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

#: the carrier-standard opt-out and opt-in keywords, and the Chinese ones residents use
STOP = {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT", "退订", "TD"}
START = {"START", "YES", "UNSTOP", "OPTIN", "订阅"}
HELP = {"HELP", "INFO", "帮助"}
SAFE = {"1", "SAFE", "OK SAFE", "安全", "平安"}
NEED_HELP = {"2", "HELP ME", "NEED HELP", "求助", "需要帮助"}

Intent = Literal["stop", "start", "help", "safe", "need_help", "ack", "other"]


@dataclass(frozen=True, slots=True)
class Reply:
    intent: Intent
    incident: int | None = None


def classify(body: str, *, from_staff: bool) -> Reply:
    text = " ".join(body.strip().upper().split())
    if text in STOP:
        return Reply("stop")
    if text in START:
        return Reply("start")
    if from_staff:
        match = re.fullmatch(r"(?:OK|ACK|收到|好的?)\s*#?(\d{1,9})?", text)
        if match:
            return Reply("ack", int(match.group(1)) if match.group(1) else None)
    if text in HELP:
        return Reply("help")
    if text in SAFE:
        return Reply("safe")
    if text in NEED_HELP:
        return Reply("need_help")
    return Reply("other")
