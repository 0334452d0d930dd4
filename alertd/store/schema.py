"""Migrations, applied in order, each in its own transaction."""

MIGRATIONS: list[tuple[str, str]] = [
    (
        "events, device state, dead letters, receipts",
        """
        CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,
            state TEXT NOT NULL,
            severity TEXT NOT NULL,
            device_id TEXT NOT NULL,
            site TEXT NOT NULL, building TEXT NOT NULL, floor TEXT NOT NULL,
            unit TEXT NOT NULL, zone TEXT NOT NULL,
            occurred_at TEXT NOT NULL,
            received_at TEXT NOT NULL,
            source TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT '',
            raw TEXT NOT NULL DEFAULT ''
        );
        CREATE INDEX events_received ON events(received_at);
        CREATE INDEX events_kind ON events(kind, received_at);
        CREATE INDEX events_device ON events(device_id, id);
        CREATE TABLE device_state (
            device_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            active INTEGER NOT NULL,
            since TEXT NOT NULL,
            event_id INTEGER NOT NULL,
            seq INTEGER NOT NULL,
            PRIMARY KEY (device_id, kind)
        );
        CREATE TABLE device_seen (
            device_id TEXT PRIMARY KEY,
            last_seen TEXT NOT NULL,
            "values" TEXT NOT NULL DEFAULT '{}'
        );
        CREATE TABLE dead_letters (
            id INTEGER PRIMARY KEY,
            received_at TEXT NOT NULL,
            source TEXT NOT NULL,
            topic TEXT NOT NULL,
            device_id TEXT NOT NULL,
            reason TEXT NOT NULL,
            payload BLOB NOT NULL,
            size INTEGER NOT NULL
        );
        CREATE INDEX dead_letters_received ON dead_letters(received_at);
        CREATE TABLE receipts (key TEXT PRIMARY KEY, digest TEXT NOT NULL);
        CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
        """,
    ),
    (
        "events carry the device's tags and a drill flag",
        """
        ALTER TABLE events ADD COLUMN tags TEXT NOT NULL DEFAULT '{}';
        ALTER TABLE events ADD COLUMN drill INTEGER NOT NULL DEFAULT 0;
        """,
    ),
]
