"""alertd SIGKILLed while messages keep coming, then restarted: every message accounted for."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

from alertd.store import SqliteStore
from tests.broker import Broker
from tests.helpers import start_daemon, wait_for
from tests.mqtt_tools import Publisher, write_config
from tests.test_mqtt import leak_devices, leak_messages

DEVICES, ROUNDS = 50, 60  # 3,000 messages, each one a change of state


def stored_keys(db: Path) -> list[tuple[str, int]]:
    if not db.exists():
        return []
    store = SqliteStore(db)
    try:
        return [(r["device_id"], json.loads(r["raw"])["seq"]) for r in store.events()]
    finally:
        store.close()


def test_sigkill_mid_stream_loses_nothing_and_duplicates_nothing(
    tmp_path: Path, broker: Broker
) -> None:
    config = write_config(tmp_path, broker, leak_devices(DEVICES), client_id="alertd-crash")
    db, log = tmp_path / "alertd.db", tmp_path / "alertd.log"
    daemon = start_daemon(config, log)
    wait_for(lambda: b"connected to MQTT" in log.read_bytes(), 20, "alertd to connect")

    messages = leak_messages(DEVICES, ROUNDS)
    pub = Publisher(broker, "crash-publisher")
    sent = threading.Event()

    def publish() -> None:
        for i in range(0, len(messages), 100):
            pub.publish_all(messages[i : i + 100])
        sent.set()

    thread = threading.Thread(target=publish)
    thread.start()
    wait_for(lambda: len(stored_keys(db)) >= 500, 30, "the first 500 events")
    os.kill(daemon.pid, signal.SIGKILL)  # mid-stream: messages keep coming
    daemon.wait(10)
    killed_at = len(stored_keys(db))
    daemon = start_daemon(config, log)
    try:
        thread.join(60)
        assert sent.is_set()
        wait_for(lambda: len(stored_keys(db)) >= len(messages), 60, "every message")
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(20) == 0  # a clean shutdown on SIGTERM
        pub.close()
    keys = stored_keys(db)
    published = {(f"leak-{d}", n) for n in range(ROUNDS) for d in range(DEVICES)}
    assert killed_at < len(messages), "the kill came too late to test anything"
    assert len(keys) == len(set(keys)), "a message became two events"
    assert set(keys) == published
    assert b"alertd stopped" in log.read_bytes()
    print(f"killed after {killed_at} of {len(messages)} events")
