"""Sinks that are not phones: the PA broadcast controller (an MQTT publish) and webhooks
(a JSON POST, e.g. a WeCom, DingTalk or Slack-compatible robot)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping

import aiohttp

from alertd.config import PaConfig, WebhookConfig
from alertd.outbox.sink import Message, Result

Publish = Callable[[str, bytes], Awaitable[None]]


class PaSink:
    """`pa:<scope>:<building>` messages become a QoS 1 publish to the building's topic,
    over the broker of the incident's site (`by_site`; else the shared one)."""

    def __init__(
        self, config: PaConfig, publish: Publish, by_site: Mapping[str, Publish] | None = None
    ) -> None:
        self._config = config
        self._publish = publish
        self._by_site = dict(by_site or {})

    async def send(self, message: Message) -> Result:
        _, scope, building = ([*message.recipient.split(":", 2), "", ""])[:3]
        topic = self._config.topic.format(building=building, scope=scope)
        fields = {
            "building": building,
            "scope": scope,
            "text": message.body,
            "language": message.language,
            "message": message.id,
        }
        if self._config.payload is None:
            payload = json.dumps(fields, ensure_ascii=False).encode()
        else:
            escaped = {
                k: json.dumps(v, ensure_ascii=False)[1:-1] if isinstance(v, str) else v
                for k, v in fields.items()
            }
            payload = self._config.payload.format(**escaped).encode()
        try:
            await self._by_site.get(message.site, self._publish)(topic, payload)
        except ConnectionError as exc:
            return Result("retryable", f"PA broadcast: {exc}")
        return Result("sent", provider_id=f"mqtt:{topic}")

    async def close(self) -> None:
        return None


#: robots' "slow down" answers: WeCom 45009 (API frequency out of limit), DingTalk 130101
#: (send too fast: 20 a minute, then held for 10 minutes) and 90030 (webhook over limit)
ROBOT_THROTTLED = {45009, 130101, 90030}


def _robot_answer(name: str, body: bytes) -> Result:
    """WeCom and DingTalk answer HTTP 200 with `{"errcode": N, "errmsg": ...}`: only
    errcode 0 is a message delivered."""
    try:
        answer = json.loads(body)
        code = int(answer.get("errcode", -1))
    except (ValueError, TypeError, AttributeError):
        return Result("retryable", f"webhook {name}: an answer that is not the robot's JSON")
    if code == 0:
        return Result("sent", provider_id=f"webhook:{name}")
    reason = f"webhook {name}: errcode {code} {str(answer.get('errmsg', ''))[:120]}".rstrip()
    if code in ROBOT_THROTTLED:
        return Result("throttled", reason, retry_after_s=60.0)
    return Result("permanent", reason)


_JSON = {"Content-Type": "application/json; charset=utf-8"}


class WebhookSink:
    """`webhook:<name>:<building>` messages are POSTed to the named webhook's URL."""

    def __init__(self, hooks: Mapping[str, WebhookConfig]) -> None:
        self._hooks = dict(hooks)
        self._session: aiohttp.ClientSession | None = None

    async def send(self, message: Message) -> Result:
        name = message.recipient.split(":", 2)[1] if ":" in message.recipient else ""
        hook = self._hooks.get(name)
        if hook is None:
            return Result("permanent", f"no webhook named {name!r} under webhooks:")
        if self._session is None:
            # work per request kept to the POST: no cookie jar; no pool limit and no timer
            # of its own, as the dispatcher bounds both (the lane's concurrency, and
            # delivery.send_timeout_s around every send)
            self._session = aiohttp.ClientSession(
                cookie_jar=aiohttp.DummyCookieJar(),
                connector=aiohttp.TCPConnector(limit=0),
                timeout=aiohttp.ClientTimeout(),
            )
        body: dict[str, object] = (
            {"text": message.body}
            if hook.format == "slack"
            else {"msgtype": "text", "text": {"content": message.body}}
        )
        data = json.dumps(body, ensure_ascii=False).encode()
        try:
            async with self._session.post(
                hook.url.get_secret_value(), data=data, headers=_JSON
            ) as response:
                retry_after = response.headers.get("Retry-After")
                wait = float(retry_after) if retry_after else None
                reason = f"webhook {name}: HTTP {response.status}"  # never the URL: a secret
                if response.status < 300:
                    if hook.format == "slack":
                        return Result("sent", provider_id=f"webhook:{name}")
                    return _robot_answer(name, await response.read())
                if response.status == 429:
                    return Result("throttled", reason, retry_after_s=wait)
                if response.status in (401, 403):
                    return Result("unavailable", reason)
                if response.status >= 500:
                    return Result("retryable", reason, retry_after_s=wait)
                return Result("permanent", reason)
        except aiohttp.ClientError as exc:
            return Result("retryable", f"webhook {name}: {type(exc).__name__}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
