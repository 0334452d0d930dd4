"""A second SMS provider when the first fails: `python -m bench.providers [--quick]`.

`alertd run` as shipped (SQLite, the shipped playbooks and example templates file,
`delivery.providers: [aliyun, twilio]`), a real Mosquitto with its default settings, the
Aliyun fake answering HTTP 500 to every request (the real SDK, signatures checked) and
the fake Twilio. 20 fires (5 with --quick) in 20 buildings, one a second: for each,
the time from Aliyun's failed answer for security's first SMS to the fake Twilio's
request for it. Reports p50/p99/max, and how many SMS security got per fire (1 is right).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import tempfile
from pathlib import Path

from bench import q, quick_flag
from tests import fake_aliyun
from tests.broker import Broker
from tests.fake_aliyun import FakeAliyun
from tests.fake_twilio import FakeTwilio
from tests.helpers import start_daemon, wait_for
from tests.mqtt_tools import publish, until

ROOT = Path(__file__).resolve().parent.parent
SECURITY = "+8613900000001"


def write_config(
    root: Path, broker: Broker, aliyun: FakeAliyun, twilio: FakeTwilio, n: int
) -> Path:
    rows = ["device_id,profile,topic,building,floor,unit"]
    rows += [f"smoke-{i},zigbee2mqtt,z/smoke_{i},{i + 1},1,0101" for i in range(n)]
    (root / "devices.csv").write_text("\n".join(rows) + "\n")
    (root / "staff.yaml").write_text(
        f"people:\n  Wang: {{phone: '{SECURITY}', roles: [security, supervisor]}}\n"
        "oncall:\n  security:\n    - {who: Wang, start: '00:00', end: '12:00'}\n"
        "    - {who: Wang, start: '12:00', end: '00:00'}\n"
    )
    config = root / "alertd.yaml"
    config.write_text(
        "site: {name: HV, timezone: Asia/Shanghai}\n"
        f"mqtt: {{port: {broker.port}, client_id: bench-providers}}\n"
        f"storage: {{path: {root / 'alertd.db'}}}\n"
        f"devices: devices.csv\nstaff: staff.yaml\nplaybooks: {ROOT / 'playbooks'}\n"
        "delivery: {providers: [aliyun, twilio]}\n"
        f"aliyun: {{access_key_id: {fake_aliyun.KEY_ID}, access_key_secret: "
        f"{fake_aliyun.KEY_SECRET}, endpoint: '{aliyun.endpoint}', protocol: http, "
        f"templates: {ROOT / 'config/templates.aliyun.example.yaml'}}}\n"
        f"twilio: {{account_sid: AC{'0' * 32}, auth_token: t, "
        f"from_number: '+15005550006', api_base_url: '{twilio.base_url}'}}\n"
    )
    return config


def _incident(request: dict[str, str]) -> int | None:
    values = json.loads(request.get("TemplateParam") or "{}")
    return int(values["incident"]) if "incident" in values else None


async def run(fires: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        broker = Broker(root / "mosquitto").start()
        aliyun = await FakeAliyun().start()
        aliyun.storm = fake_aliyun.Refusal("InternalError", status=500, message="server error")
        twilio = await FakeTwilio().start()
        log = root / "alertd.log"
        proc = start_daemon(write_config(root, broker, aliyun, twilio, fires), log)
        try:
            await asyncio.to_thread(
                wait_for, lambda: b"connected to MQTT" in log.read_bytes(), 60, "alertd"
            )
            for i in range(fires):
                await asyncio.to_thread(publish, broker, f"z/smoke_{i}", '{"smoke": true}')
                await asyncio.sleep(1.0)
            with contextlib.suppress(TimeoutError):  # said below: how many arrived
                await until(lambda: len(_texts(twilio)) >= fires, 60)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
            await aliyun.close()
            await twilio.close()
            broker.stop()
        failed: dict[int, float] = {}
        for request, at in zip(aliyun.requests, aliyun.times, strict=True):
            number = _incident(request)
            if request["action"] == "SendSms" and number is not None:
                failed.setdefault(number, at)
        took, per_fire = [], []
        for number, at in sorted(failed.items()):
            texts = [t for t in _texts(twilio) if re.search(rf"#{number}\b", t["form"]["Body"])]
            per_fire.append(len(texts))
            if texts:
                took.append(texts[0]["at"] - at)
        if len(took) < fires:
            raise SystemExit(f"only {len(took)} of {fires} fires reached security: see {log}")
        print(
            f"first provider failing (Aliyun 500), {fires} fires: its failure -> the second "
            f"provider's request p50={q(took, 50) * 1000:.1f} ms p99={q(took, 99) * 1000:.1f} "
            f"ms max={max(took) * 1000:.1f} ms; SMS to security per fire: "
            f"{sorted(set(per_fire))}"
        )


def _texts(twilio: FakeTwilio) -> list[dict]:  # type: ignore[type-arg]
    return [r for r in twilio.sms() if r["form"]["To"] == SECURITY]


def main() -> None:
    asyncio.run(run(5 if quick_flag(__doc__) else 20))


if __name__ == "__main__":
    main()
