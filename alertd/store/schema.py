"""Migrations, one registry for both engines, applied in order, each in its own transaction.

SQLite stores have been migrated step by step since the first release; PostgreSQL came
later, so a PostgreSQL store starts from `POSTGRES_BASELINE` (the schema of the first
`POSTGRES_BASELINE_VERSION` migrations in one script) and takes each later migration's
`postgres` script. The tables keep the same columns and values on both (times as fixed-width
UTC text, flags as integers), so the same rows move between them (`alertd store copy`)."""

from typing import NamedTuple


class Migration(NamedTuple):
    name: str
    sqlite: str
    #: None: folded into POSTGRES_BASELINE; "": nothing to do on PostgreSQL
    postgres: str | None = None


MIGRATIONS: list[Migration] = [
    Migration(
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
    Migration(
        "events carry the device's tags and a drill flag",
        """
        ALTER TABLE events ADD COLUMN tags TEXT NOT NULL DEFAULT '{}';
        ALTER TABLE events ADD COLUMN drill INTEGER NOT NULL DEFAULT 0;
        """,
    ),
    Migration(
        "incidents, their timeline, the outbox, timers and staff commands",
        """
        CREATE TABLE incidents (
            id INTEGER PRIMARY KEY,
            playbook TEXT NOT NULL,
            key TEXT NOT NULL,
            status TEXT NOT NULL,
            severity TEXT NOT NULL,
            site TEXT NOT NULL, building TEXT NOT NULL, floor TEXT NOT NULL,
            unit TEXT NOT NULL, zone TEXT NOT NULL,
            title TEXT NOT NULL,
            opened_at TEXT NOT NULL,
            last_event_at TEXT NOT NULL,
            acknowledged_at TEXT,
            resolved_at TEXT,
            expected_restore_at TEXT,
            active TEXT NOT NULL,
            units TEXT NOT NULL,
            run TEXT NOT NULL,
            drill INTEGER NOT NULL
        );
        CREATE INDEX incidents_status ON incidents(status, id);
        CREATE TABLE timeline (
            id INTEGER PRIMARY KEY,
            incident_id INTEGER NOT NULL,
            at TEXT NOT NULL,
            type TEXT NOT NULL,
            actor TEXT NOT NULL,
            text TEXT NOT NULL,
            event_id INTEGER
        );
        CREATE INDEX timeline_incident ON timeline(incident_id, id);
        CREATE TABLE outbox (
            id INTEGER PRIMARY KEY,
            incident_id INTEGER NOT NULL,
            created_at TEXT NOT NULL,
            channel TEXT NOT NULL,
            target TEXT NOT NULL,
            texts TEXT NOT NULL,
            vulnerable_first INTEGER NOT NULL,
            step TEXT NOT NULL,
            vulnerable_list INTEGER NOT NULL,
            drill INTEGER NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending'
        );
        CREATE INDEX outbox_status ON outbox(status, id);
        CREATE TABLE timers (
            id INTEGER PRIMARY KEY,
            incident_id INTEGER NOT NULL,
            due_at TEXT NOT NULL,
            kind TEXT NOT NULL,
            step INTEGER NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending'
        );
        CREATE INDEX timers_pending ON timers(state, due_at);
        CREATE TABLE commands (
            id INTEGER PRIMARY KEY,
            created_at TEXT NOT NULL,
            command TEXT NOT NULL,
            incident_id INTEGER,
            actor TEXT NOT NULL,
            text TEXT NOT NULL,
            args TEXT NOT NULL DEFAULT '{}',
            state TEXT NOT NULL DEFAULT 'pending',
            result TEXT NOT NULL DEFAULT ''
        );
        ALTER TABLE events ADD COLUMN decided INTEGER NOT NULL DEFAULT 0;
        UPDATE events SET decided = 1;
        CREATE INDEX events_undecided ON events(id) WHERE decided = 0;
        """,
    ),
    Migration(
        "the residents directory",
        """
        CREATE TABLE residents (
            id INTEGER PRIMARY KEY,
            building TEXT NOT NULL, floor TEXT NOT NULL, unit TEXT NOT NULL,
            name TEXT NOT NULL,
            phone TEXT NOT NULL,
            language TEXT NOT NULL,
            vulnerable INTEGER NOT NULL,
            notes TEXT NOT NULL,
            opted_out INTEGER NOT NULL DEFAULT 0,
            undeliverable TEXT,
            moved_out TEXT,
            updated_at TEXT NOT NULL,
            UNIQUE (building, unit, phone)
        );
        CREATE INDEX residents_place ON residents(building, floor, unit);
        """,
    ),
    Migration(
        "messages: one row per recipient, written before it is sent",
        """
        CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            outbox_id INTEGER NOT NULL,
            incident_id INTEGER NOT NULL,
            channel TEXT NOT NULL,
            recipient TEXT NOT NULL,
            recipient_kind TEXT NOT NULL,
            recipient_ref TEXT NOT NULL,
            language TEXT NOT NULL,
            body TEXT NOT NULL,
            priority INTEGER NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending',
            attempts INTEGER NOT NULL DEFAULT 0,
            due_at TEXT NOT NULL,
            expires_at TEXT,
            provider_id TEXT,
            reason TEXT NOT NULL DEFAULT '',
            updated_at TEXT NOT NULL,
            UNIQUE (outbox_id, channel, recipient)
        );
        CREATE INDEX messages_due ON messages(status, priority, due_at);
        CREATE INDEX messages_provider ON messages(provider_id);
        """,
    ),
    Migration(
        "incidents keep their origin, the places seen, the all-clear state and who acked",
        """
        ALTER TABLE incidents ADD COLUMN origin TEXT NOT NULL DEFAULT '{}';
        ALTER TABLE incidents ADD COLUMN seen TEXT NOT NULL DEFAULT '[]';
        ALTER TABLE incidents ADD COLUMN cleared_at TEXT;
        ALTER TABLE incidents ADD COLUMN all_clear_sent INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE incidents ADD COLUMN acknowledged_by TEXT NOT NULL DEFAULT '';
        """,
    ),
    Migration(
        "delivery lanes: claims per channel by priority, and each lane's state",
        """
        CREATE INDEX messages_lane ON messages(status, channel, priority, id);
        CREATE INDEX messages_lane_age ON messages(status, channel, due_at, id);
        CREATE TABLE early_receipts (
            provider_id TEXT NOT NULL,
            status TEXT NOT NULL,
            error_code INTEGER,
            at TEXT NOT NULL
        );
        CREATE INDEX early_receipts_id ON early_receipts(provider_id);
        CREATE TABLE delivery_lanes (
            channel TEXT PRIMARY KEY,
            state TEXT NOT NULL,
            reason TEXT NOT NULL,
            since TEXT NOT NULL
        );
        """,
    ),
    Migration(
        "console: accounts, sessions, an append-only audit trail; incidents by opening time",
        """
        CREATE TABLE users (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            role TEXT NOT NULL,
            staff TEXT NOT NULL,
            password_hash TEXT NOT NULL,
            disabled INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE TABLE web_sessions (
            token_hash TEXT PRIMARY KEY,
            user_id INTEGER NOT NULL,
            csrf TEXT NOT NULL,
            created_at TEXT NOT NULL,
            expires_at TEXT NOT NULL,
            remote TEXT NOT NULL
        );
        CREATE TABLE audit (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            who TEXT NOT NULL,
            os_user TEXT NOT NULL,
            via TEXT NOT NULL,
            remote TEXT NOT NULL,
            action TEXT NOT NULL,
            incident_id INTEGER,
            detail TEXT NOT NULL
        );
        CREATE INDEX audit_at ON audit(at);
        CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
            BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
        CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
            BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
        CREATE INDEX incidents_opened ON incidents(opened_at);
        """,
    ),
    Migration(
        "messages by incident (the incident page), technicians on site (the analytics)",
        """
        CREATE INDEX messages_incident ON messages(incident_id, id);
        CREATE INDEX timeline_on_site ON timeline(incident_id, at) WHERE type = 'on_site';
        """,
    ),
    Migration(
        "messages: no index by (status, priority, due_at); the lanes' indexes serve",
        """
        DROP INDEX messages_due;
        """,
    ),
    Migration(
        "messages: the age index holds pending messages only, the provider index sent ones",
        # an alarm's commit wrote two pages of each: the message's entry when it is
        # written, and the one moved when the message before it was sent
        """
        DROP INDEX messages_lane_age;
        CREATE INDEX messages_lane_age ON messages(channel, due_at, id) WHERE status = 'pending';
        DROP INDEX messages_provider;
        CREATE INDEX messages_provider ON messages(provider_id) WHERE provider_id IS NOT NULL;
        """,
    ),
    Migration(
        "incidents resolved or closed with a detector still in alarm (the board, the start)",
        """
        CREATE INDEX incidents_held ON incidents(id) WHERE active != '[]';
        """,
    ),
    Migration(
        "residents belong to a site: the same unit number at two estates is two flats",
        # a store written before sites: its residents are claimed by the one configured
        # site at start (`claim_residents`); with several sites they wait, reported
        """
        CREATE TABLE residents_by_site (
            id INTEGER PRIMARY KEY,
            site TEXT NOT NULL DEFAULT '',
            building TEXT NOT NULL, floor TEXT NOT NULL, unit TEXT NOT NULL,
            name TEXT NOT NULL,
            phone TEXT NOT NULL,
            language TEXT NOT NULL,
            vulnerable INTEGER NOT NULL,
            notes TEXT NOT NULL,
            opted_out INTEGER NOT NULL DEFAULT 0,
            undeliverable TEXT,
            moved_out TEXT,
            updated_at TEXT NOT NULL,
            UNIQUE (site, building, unit, phone)
        );
        INSERT INTO residents_by_site (id, building, floor, unit, name, phone, language,
            vulnerable, notes, opted_out, undeliverable, moved_out, updated_at)
            SELECT id, building, floor, unit, name, phone, language, vulnerable, notes,
            opted_out, undeliverable, moved_out, updated_at FROM residents;
        DROP TABLE residents;
        ALTER TABLE residents_by_site RENAME TO residents;
        CREATE INDEX residents_place ON residents(site, building, floor, unit);
        CREATE INDEX residents_phone ON residents(phone);
        """,
    ),
    Migration(
        "messages carry their incident's site: its sender texts them",
        """
        ALTER TABLE messages ADD COLUMN site TEXT NOT NULL DEFAULT '';
        """,
    ),
    Migration(
        "console accounts are granted sites; audit rows say which site they are about",
        # every account of a store before sites sees every site (there was one); audit
        # rows before sites are about no one site ('')
        """
        ALTER TABLE users ADD COLUMN sites TEXT NOT NULL DEFAULT '*';
        ALTER TABLE audit ADD COLUMN site TEXT NOT NULL DEFAULT '';
        """,
    ),
    Migration(
        "dead letters say which site they came from (a device's, or its broker's)",
        """
        ALTER TABLE dead_letters ADD COLUMN site TEXT NOT NULL DEFAULT '';
        """,
    ),
]

MIGRATIONS += [
    Migration(
        "several instances: who is running, and which one owns each site (a lease with an epoch)",
        # one box needs no owner: SQLite's single writer is the whole story
        "",
        """
        CREATE TABLE instances (
            id TEXT PRIMARY KEY,
            host TEXT NOT NULL,
            pid BIGINT NOT NULL,
            started_at TIMESTAMPTZ NOT NULL,
            seen_at TIMESTAMPTZ NOT NULL,
            stopping BOOLEAN NOT NULL DEFAULT false
        );
        CREATE TABLE site_leases (
            site TEXT PRIMARY KEY,
            owner TEXT,
            epoch BIGINT NOT NULL DEFAULT 0,
            expires_at TIMESTAMPTZ NOT NULL,
            acquired_at TIMESTAMPTZ NOT NULL,
            takeovers BIGINT NOT NULL DEFAULT 0,
            handovers BIGINT NOT NULL DEFAULT 0
        );
        """,
    ),
    Migration(
        "a change of incidents wakes the consoles (LISTEN alertd_incidents, a hint)",
        # SQLite's consoles see a commit by PRAGMA data_version
        "",
        """
        CREATE FUNCTION alertd_incidents_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('alertd_incidents', '');
            RETURN NULL;
        END $$;
        CREATE TRIGGER incidents_changed AFTER INSERT OR UPDATE OR DELETE ON incidents
            FOR EACH STATEMENT EXECUTE FUNCTION alertd_incidents_changed();
        """,
    ),
]

_OUTBOX_VALUES = """
ALTER TABLE outbox ADD COLUMN template TEXT NOT NULL DEFAULT '';
ALTER TABLE outbox ADD COLUMN params TEXT NOT NULL DEFAULT '';
"""
MIGRATIONS += [
    Migration(
        "an SMS action keeps its template's name and values: a provider's registered "
        "template is filled with them",
        _OUTBOX_VALUES,
        _OUTBOX_VALUES,
    ),
]

_RECEIPT_WORDS = """
ALTER TABLE early_receipts ADD COLUMN reason TEXT NOT NULL DEFAULT '';
ALTER TABLE early_receipts ADD COLUMN unreachable TEXT NOT NULL DEFAULT '';
ALTER TABLE early_receipts ADD COLUMN provider TEXT NOT NULL DEFAULT 'twilio';
"""
MIGRATIONS += [
    Migration(
        "a receipt that came early keeps what its provider said it means (any provider's)",
        _RECEIPT_WORDS,
        _RECEIPT_WORDS,
    ),
]

_SECRETS = """
CREATE TABLE secrets (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
MIGRATIONS += [
    Migration(
        "keys alertd makes for itself (the phone links' signing key)",
        _SECRETS,
        _SECRETS,
    ),
]

#: PostgreSQL stores start here: the first POSTGRES_BASELINE_VERSION migrations as one script
POSTGRES_BASELINE_VERSION = 16

POSTGRES_BASELINE = """
CREATE TABLE events (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
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
    raw TEXT NOT NULL DEFAULT '',
    tags TEXT NOT NULL DEFAULT '{}',
    drill BIGINT NOT NULL DEFAULT 0,
    decided BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX events_received ON events(received_at);
CREATE INDEX events_kind ON events(kind, received_at);
CREATE INDEX events_device ON events(device_id, id);
CREATE INDEX events_undecided ON events(id) WHERE decided = 0;
CREATE TABLE device_state (
    device_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    active BIGINT NOT NULL,
    since TEXT NOT NULL,
    event_id BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    PRIMARY KEY (device_id, kind)
);
CREATE TABLE device_seen (
    device_id TEXT PRIMARY KEY,
    last_seen TEXT NOT NULL,
    "values" TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE dead_letters (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    received_at TEXT NOT NULL,
    source TEXT NOT NULL,
    topic TEXT NOT NULL,
    device_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    payload BYTEA NOT NULL,
    size BIGINT NOT NULL,
    site TEXT NOT NULL DEFAULT ''
);
CREATE INDEX dead_letters_received ON dead_letters(received_at);
CREATE TABLE receipts (key TEXT PRIMARY KEY, digest TEXT NOT NULL);
CREATE TABLE counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL);
CREATE TABLE incidents (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    playbook TEXT NOT NULL,
    key TEXT NOT NULL,
    status TEXT NOT NULL,
    severity TEXT NOT NULL,
    site TEXT NOT NULL, building TEXT NOT NULL, floor TEXT NOT NULL,
    unit TEXT NOT NULL, zone TEXT NOT NULL,
    title TEXT NOT NULL,
    opened_at TEXT NOT NULL,
    last_event_at TEXT NOT NULL,
    acknowledged_at TEXT,
    resolved_at TEXT,
    expected_restore_at TEXT,
    active TEXT NOT NULL,
    units TEXT NOT NULL,
    run TEXT NOT NULL,
    drill BIGINT NOT NULL,
    origin TEXT NOT NULL DEFAULT '{}',
    seen TEXT NOT NULL DEFAULT '[]',
    cleared_at TEXT,
    all_clear_sent BIGINT NOT NULL DEFAULT 0,
    acknowledged_by TEXT NOT NULL DEFAULT ''
);
CREATE INDEX incidents_status ON incidents(status, id);
CREATE INDEX incidents_opened ON incidents(opened_at);
CREATE INDEX incidents_held ON incidents(id) WHERE active != '[]';
CREATE TABLE timeline (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    incident_id BIGINT NOT NULL,
    at TEXT NOT NULL,
    type TEXT NOT NULL,
    actor TEXT NOT NULL,
    text TEXT NOT NULL,
    event_id BIGINT
);
CREATE INDEX timeline_incident ON timeline(incident_id, id);
CREATE INDEX timeline_on_site ON timeline(incident_id, at) WHERE type = 'on_site';
CREATE TABLE outbox (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    incident_id BIGINT NOT NULL,
    created_at TEXT NOT NULL,
    channel TEXT NOT NULL,
    target TEXT NOT NULL,
    texts TEXT NOT NULL,
    vulnerable_first BIGINT NOT NULL,
    step TEXT NOT NULL,
    vulnerable_list BIGINT NOT NULL,
    drill BIGINT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending'
);
CREATE INDEX outbox_status ON outbox(status, id);
CREATE TABLE timers (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    incident_id BIGINT NOT NULL,
    due_at TEXT NOT NULL,
    kind TEXT NOT NULL,
    step BIGINT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending'
);
CREATE INDEX timers_pending ON timers(state, due_at);
CREATE TABLE commands (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    created_at TEXT NOT NULL,
    command TEXT NOT NULL,
    incident_id BIGINT,
    actor TEXT NOT NULL,
    text TEXT NOT NULL,
    args TEXT NOT NULL DEFAULT '{}',
    state TEXT NOT NULL DEFAULT 'pending',
    result TEXT NOT NULL DEFAULT ''
);
CREATE TABLE residents (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    site TEXT NOT NULL DEFAULT '',
    building TEXT NOT NULL, floor TEXT NOT NULL, unit TEXT NOT NULL,
    name TEXT NOT NULL,
    phone TEXT NOT NULL,
    language TEXT NOT NULL,
    vulnerable BIGINT NOT NULL,
    notes TEXT NOT NULL,
    opted_out BIGINT NOT NULL DEFAULT 0,
    undeliverable TEXT,
    moved_out TEXT,
    updated_at TEXT NOT NULL,
    UNIQUE (site, building, unit, phone)
);
CREATE INDEX residents_place ON residents(site, building, floor, unit);
CREATE INDEX residents_phone ON residents(phone);
CREATE TABLE messages (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    outbox_id BIGINT NOT NULL,
    incident_id BIGINT NOT NULL,
    channel TEXT NOT NULL,
    recipient TEXT NOT NULL,
    recipient_kind TEXT NOT NULL,
    recipient_ref TEXT NOT NULL,
    language TEXT NOT NULL,
    body TEXT NOT NULL,
    priority BIGINT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts BIGINT NOT NULL DEFAULT 0,
    due_at TEXT NOT NULL,
    expires_at TEXT,
    provider_id TEXT,
    reason TEXT NOT NULL DEFAULT '',
    updated_at TEXT NOT NULL,
    site TEXT NOT NULL DEFAULT '',
    UNIQUE (outbox_id, channel, recipient)
);
CREATE INDEX messages_lane ON messages(status, channel, priority, id);
CREATE INDEX messages_lane_age ON messages(channel, due_at, id) WHERE status = 'pending';
CREATE INDEX messages_provider ON messages(provider_id) WHERE provider_id IS NOT NULL;
CREATE INDEX messages_incident ON messages(incident_id, id);
CREATE TABLE early_receipts (
    provider_id TEXT NOT NULL,
    status TEXT NOT NULL,
    error_code BIGINT,
    at TEXT NOT NULL
);
CREATE INDEX early_receipts_id ON early_receipts(provider_id);
CREATE TABLE delivery_lanes (
    channel TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    reason TEXT NOT NULL,
    since TEXT NOT NULL
);
CREATE TABLE users (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    staff TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    disabled BIGINT NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    sites TEXT NOT NULL DEFAULT '*'
);
CREATE TABLE web_sessions (
    token_hash TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL,
    csrf TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    remote TEXT NOT NULL
);
CREATE TABLE audit (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    at TEXT NOT NULL,
    who TEXT NOT NULL,
    os_user TEXT NOT NULL,
    via TEXT NOT NULL,
    remote TEXT NOT NULL,
    action TEXT NOT NULL,
    incident_id BIGINT,
    detail TEXT NOT NULL,
    site TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_at ON audit(at);
CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit trail is append-only';
END $$;
CREATE TRIGGER audit_no_change BEFORE UPDATE OR DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
"""
