"""The one configuration file, validated on load; errors name file, line and key."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator

from alertd.engine.inhibit import InhibitRule
from alertd.events import Kind
from alertd.model import Strict
from alertd.problems import InvalidInput, Problem
from alertd.yamlfile import load_yaml, pydantic_problems
from integrations.mqtt.profiles.spec import ProfileSpec
from integrations.panels.spec import PanelConfig, PrinterFormat, ReceiverConfig

if TYPE_CHECKING:
    from alertd.store.events import Events
    from alertd.store.sqlite import Reader

#: a site's id, as files, commands and URLs name it
SITE_ID = r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}"
#: who sends SMS
Provider = Literal["twilio", "aliyun", "tencent"]


class MqttConfig(Strict):
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    client_id: str = Field("alertd", min_length=1, max_length=64)
    username: str | None = None
    password: SecretStr | None = None
    tls: bool = False
    keepalive_s: int = Field(30, ge=5, le=3600)
    #: how long the broker keeps our session (and queues messages) while we are away
    session_expiry_s: int = Field(7 * 86400, ge=60)
    #: QoS 1 messages the broker may have in flight to us before waiting for acks. Wide
    #: enough to cover a slow commit under a telemetry storm: an alarm held at the broker
    #: waits behind every routine message queued before it; once here, it goes first
    receive_maximum: int = Field(20_000, ge=1, le=65535)
    max_payload_bytes: int = Field(64 * 1024, ge=64)
    reconnect_max_s: float = Field(30.0, gt=0, le=3600)


class SiteConfig(Strict):
    """One estate. Under `site:`, the one site (or every site's defaults); under
    `sites.<id>:`, a site of its own, each setting it leaves out taken from `site:` (and
    its devices, staff, broker and sender from the top level)."""

    name: str = "site"
    timezone: str = "UTC"
    #: the region phone numbers without a country code belong to (ISO 3166, e.g. CN)
    country: str = "CN"
    #: put at the start of every resident SMS, e.g. 【海景物业服务中心】; one text for both
    #: languages, or one per language (a Chinese signature makes an English SMS UCS-2,
    #: which fits 70 characters a segment instead of 160)
    sms_signature: str | dict[Literal["zh", "en"], str] = ""
    #: how flats are numbered, to find the flat below a leak: unset, alertd tries the
    #: usual forms (1203, 0805, 805, 3-0805) against the residents directory; or a
    #: pattern such as "{floor:02}{flat:02}" or "{building}-{floor}{flat:02}"
    unit_format: str | None = None
    #: the service centre's name on its pages and reports (unset: console.centre)
    centre: str | None = None
    #: its own devices file (unset: the shared one, whose rows name their site)
    devices: Path | None = None
    #: its site team: staff and on-call rotations (unset: the company staff file alone)
    staff: Path | None = None
    #: playbooks of its own: one named as a shared one replaces it at this site
    playbooks: Path | None = None
    #: its own MQTT broker (unset: the shared one)
    mqtt: MqttConfig | None = None
    #: its own SMS sender (unset: twilio's)
    from_number: str | None = None
    messaging_service_sid: str | None = None
    #: who is told when a life-safety step finds nobody (unset: delivery.fallback_role)
    fallback_role: str | None = None
    #: SMS providers in the order tried (unset: delivery.providers)
    providers: list[Provider] | None = None
    #: its own registered templates, per provider (unset: the provider's file)
    templates: dict[Literal["aliyun", "tencent"], Path] = {}

    @field_validator("unit_format")
    @classmethod
    def _unit_format(cls, value: str | None) -> str | None:
        from alertd.directory.units import check_format

        problem = check_format(value) if value else None
        if problem:
            raise ValueError(problem)
        return value

    @property
    def signatures(self) -> dict[str, str]:
        if isinstance(self.sms_signature, str):
            return {"zh": self.sms_signature, "en": self.sms_signature}
        return {"zh": "", "en": "", **{str(k): v for k, v in self.sms_signature.items()}}

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r} (use an IANA name)") from exc
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class StorageConfig(Strict):
    #: SQLite, the embedded store of one box
    path: Path = Path("var/alertd.db")
    #: PostgreSQL, the shared store of several instances: any libpq connection string
    #: (`postgresql://alertd@db1,db2/alertd?target_session_attrs=read-write`); the password
    #: from PGPASSWORD, ~/.pgpass or ${VAR}, never written in this file
    url: SecretStr | None = None
    #: PostgreSQL: how long the active instance's lease lasts unrenewed (it renews every
    #: fifth of it): a standby takes over this long after the active one stops answering;
    #: shorter fails over sooner, and a pause that long (a stalled VM) costs the lease
    lease_s: float = Field(5.0, ge=1, le=60)
    #: FULL survives power loss; NORMAL survives a crash of alertd only
    synchronous: Literal["FULL", "NORMAL"] = "FULL"
    #: `alertd prune` never deletes an incident record younger than this (NFPA 72 asks
    #: for at least a year)
    keep_incidents_days: int = Field(400, ge=365)
    #: raw events and dead letters no kept incident refers to go after this
    keep_events_days: int = Field(90, ge=7)

    @property
    def secret_url(self) -> str | None:
        return None if self.url is None else self.url.get_secret_value()

    @property
    def where(self) -> str:
        """The store as messages name it (never with its password)."""
        from alertd.store.stores import where

        return where(self.path, self.secret_url)

    def open(self, *, create: bool = True) -> Events:
        """The store for writing, migrated (StoreError when it cannot be; `create`: made
        when missing, else Missing)."""
        from alertd.store.stores import open_store

        return open_store(self.path, self.secret_url, create=create)

    def reader(self) -> Reader:
        """The store for reading only (StoreError, or Missing when alertd never ran)."""
        from alertd.store.stores import open_reader

        return open_reader(self.path, self.secret_url)

    @field_validator("url")
    @classmethod
    def _libpq(cls, value: SecretStr | None) -> SecretStr | None:
        from alertd.store.postgres import check_conninfo, is_postgres

        if value is None:
            return None
        text = value.get_secret_value()
        if not is_postgres(text):
            raise ValueError(
                "not a PostgreSQL connection string: postgresql://user@host/dbname or "
                "'host=... dbname=...' (a SQLite file goes in storage.path)"
            )
        wrong = check_conninfo(text)
        if wrong:
            raise ValueError(f"libpq cannot read this connection string: {wrong}")
        return value


class IngestConfig(Strict):
    #: routine (non life-safety) messages waiting for a commit; beyond this they are dropped
    queue_limit: int = Field(50_000, ge=100)
    #: routine messages per commit, so a fire alarm never waits behind a large batch
    batch_max: int = Field(500, ge=1)
    #: how long routine messages may wait to share a commit (urgent ones never wait)
    linger_ms: float = Field(5.0, ge=0, le=1000)
    #: how often heartbeats and hold times are checked
    tick_s: float = Field(1.0, gt=0, le=60)


class DeliveryConfig(Strict):
    #: SMS requests per second (per sender); unset: as fast as the concurrency allows
    sms_per_s: float | None = Field(None, gt=0, le=10_000)
    calls_per_s: float | None = Field(1.0, gt=0, le=1000)
    #: requests in flight at once; also the most a crash can make twice (the rows marked
    #: `sending` are claimed this many at a time)
    concurrency: int = Field(20, ge=1, le=500)
    #: a safety message not sent within this is dropped with a reason, not sent late
    expire_s: float = Field(1800, gt=0, le=7 * 86400)
    send_timeout_s: float = Field(15, gt=0, le=600)
    poll_s: float = Field(0.5, gt=0, le=3600)
    #: a waiting message gains one priority level per this many seconds, so residents'
    #: texts are never starved for long by staff alerts of later incidents
    starve_s: float = Field(10.0, gt=0, le=3600)
    #: a lane stopped by the provider (bad credentials) tries one message this often
    probe_s: float = Field(60.0, gt=0, le=3600)
    #: who is told when a staff step of a life-safety incident has nobody to notify
    #: (nobody holds the role, nobody is on call and nobody has it, a broken staff
    #: file): the duty desk; nobody holds this either: everyone in the staff file
    fallback_role: str = "front_desk"
    #: SMS providers in the order tried: a life-safety staff text that the first cannot
    #: send goes by the next (see alertd/outbox/providers.py); unset: Twilio when it is
    #: configured, else the console
    providers: list[Provider] = []
    #: how long a provider's answer may take before the next one is tried (a staff
    #: alert), less than send_timeout_s
    provider_timeout_s: float = Field(5.0, gt=0, le=600)


class AliyunConfig(Strict):
    """Aliyun SMS (dysmsapi 2017-05-25) through its official SDK."""

    access_key_id: str
    access_key_secret: SecretStr
    endpoint: str = "dysmsapi.aliyuncs.com"
    #: http only for a local stand-in
    protocol: Literal["https", "http"] = "https"
    #: the registered templates (provider: aliyun)
    templates: Path
    #: texts a number takes a day for one sign name and template (Aliyun's notification
    #: limit; numbers on the account's allow list have none: raise it for staff-only use)
    per_number_day: int = Field(50, ge=1, le=100_000)
    #: the secret part of the report and reply URLs given to Aliyun's console
    #: (<public_url>/aliyun/<token>/report and .../reply): Aliyun does not sign its
    #: pushes. From the environment; unset: no pushes are taken
    push_token: SecretStr | None = None

    @field_validator("push_token")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        token = value.get_secret_value() if value is not None else ""
        if value is not None and (len(token) < 24 or not token.replace("-", "").isalnum()):
            raise ValueError("must be at least 24 letters, digits or dashes (a URL part)")
        return value


class TencentConfig(Strict):
    """Tencent Cloud SMS (2021-01-11) through its official SDK (synchronous: run in a
    thread)."""

    secret_id: str
    secret_key: SecretStr
    sdk_app_id: str
    region: str = "ap-guangzhou"
    endpoint: str = "sms.tencentcloudapi.com"
    protocol: Literal["https", "http"] = "https"
    templates: Path
    #: texts a number takes a day (Tencent's default frequency limit; set yours)
    per_number_day: int = Field(10, ge=1, le=100_000)
    #: how often delivery statuses and replies are pulled (PullSmsSendStatus, ...)
    pull_s: float = Field(5.0, gt=0, le=3600)


class TwilioConfig(Strict):
    account_sid: str
    auth_token: SecretStr
    #: a sender number, or a Messaging Service (one of the two)
    from_number: str | None = None
    messaging_service_sid: str | None = None
    #: Twilio's API, or a compatible gateway (tests point the real SDK at a local fake)
    api_base_url: str = "https://api.twilio.com"
    #: where Twilio posts delivery receipts (the public URL of alertd's callbacks)
    status_callback_url: str | None = None


class PaConfig(Strict):
    """The PA broadcast controller listens on MQTT: one topic per building."""

    topic: str = "pa/building-{building}/broadcast"
    #: the body the controller expects; {text}, {building}, {language} and {message} are
    #: filled in (JSON-escaped); unset: a JSON object with those fields
    payload: str | None = None
    #: where the controller confirms a broadcast, if it does; recorded on the incident
    ack_topic: str | None = None

    @field_validator("ack_topic")
    @classmethod
    def _has_building(cls, value: str | None) -> str | None:
        if value is not None and value.count("{building}") != 1:
            raise ValueError("ack_topic must name the building once: {building}")
        if value is not None and any(c in value for c in "+#"):
            raise ValueError("ack_topic is a topic, not a filter: no + or #")
        return value


class WebhookConfig(Strict):
    #: the robot's URL carries its token: give it from the environment
    url: SecretStr
    format: Literal["wecom", "dingtalk", "slack"] = "wecom"


class SmtpConfig(Strict):
    host: str
    port: int = Field(587, ge=1, le=65535)
    from_address: str
    username: str | None = None
    password: SecretStr | None = None
    starttls: bool = True
    #: CA certificates to trust for STARTTLS (a private CA); unset: the system's
    ca_file: str | None = None
    timeout_s: float = Field(15, gt=0, le=600)


class HttpConfig(Strict):
    """alertd's own HTTP server (Twilio's callbacks)."""

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    #: the URL Twilio reaches this server at; signatures are checked against it
    public_url: str = "http://127.0.0.1:8080"


class ConsoleConfig(Strict):
    """The web console (`alertd web`), a process of its own beside the daemon."""

    host: str = "127.0.0.1"
    port: int = Field(8090, ge=0, le=65535)
    #: the address people open; an https:// one makes the session cookie Secure
    public_url: str = "http://127.0.0.1:8090"
    #: the service centre's name on the pages and the printed report
    centre: str = ""
    #: the console's CPU priority below the daemon's (nice): on a small machine, pages
    #: and analytics wait for the alert path, never the other way round
    nice: int = Field(19, ge=0, le=19)


class DrillConfig(Strict):
    #: text residents during drills (their messages carry 演练 / DRILL); off by default
    resident_sms: bool = False
    #: a drill incident nobody closed is closed this long after it opened
    end_after_s: float = Field(4 * 3600, gt=0, le=7 * 86400)


#: a power cut takes the mains-powered devices of its building offline with it
DEFAULT_INHIBIT = [
    InhibitRule(source=[Kind.POWER_LOSS], target=[Kind.SENSOR_OFFLINE], equal=["site", "building"])
]


class Config(Strict):
    site: SiteConfig = SiteConfig()
    #: several estates in one service, by id (see alertd/sites.py); empty: `site` alone
    sites: dict[str, SiteConfig] = {}
    mqtt: MqttConfig = MqttConfig()  # type: ignore[call-arg]
    storage: StorageConfig = StorageConfig()  # type: ignore[call-arg]
    devices: Path = Path("devices.csv")
    #: the folder of playbooks (one YAML file each); none configured: no playbooks
    playbooks: Path | None = None
    #: staff, roles and on-call rotations (YAML)
    staff: Path | None = None
    profiles: dict[str, ProfileSpec] = {}
    panels: dict[str, PanelConfig] = {}
    receivers: dict[str, ReceiverConfig] = {}
    printer_formats: dict[str, PrinterFormat] = {}
    ingest: IngestConfig = IngestConfig()  # type: ignore[call-arg]
    drills: DrillConfig = DrillConfig()  # type: ignore[call-arg]
    inhibit: list[InhibitRule] = DEFAULT_INHIBIT
    delivery: DeliveryConfig = DeliveryConfig()  # type: ignore[call-arg]
    #: without it, messages are printed to the console (the demo)
    twilio: TwilioConfig | None = None
    aliyun: AliyunConfig | None = None
    tencent: TencentConfig | None = None
    http: HttpConfig | None = None
    console: ConsoleConfig = ConsoleConfig()  # type: ignore[call-arg]
    pa: PaConfig = PaConfig()
    webhooks: dict[str, WebhookConfig] = {}
    smtp: SmtpConfig | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    #: `one`: the daemon keeps to one CPU core, where its threads hand Python's lock to
    #: each other cheaply (see alertd/affinity.py); `all`: the kernel places them
    cpu: Literal["one", "all"] = "one"
    #: `json`: one JSON object a line (journald, log shippers)
    log_format: Literal["text", "json"] = "text"

    @model_validator(mode="before")
    @classmethod
    def _site_defaults(cls, data: object) -> object:
        """Each entry of `sites` is `site:` with the entry's own settings on top."""
        if not isinstance(data, dict) or not isinstance(data.get("sites"), dict):
            return data
        site = data.get("site")
        shared = {k: v for k, v in site.items() if k != "name"} if isinstance(site, dict) else {}
        sites = {
            key: {**shared, "name": str(key), **entry} if isinstance(entry, dict) else entry
            for key, entry in data["sites"].items()
        }
        return {**data, "sites": sites}

    @model_validator(mode="after")
    def _providers_configured(self) -> Config:
        """Each provider a list names has its section (a typo is refused here, not at the
        first fire)."""
        lists = {"delivery.providers": self.delivery.providers}
        lists |= {f"sites.{k}.providers": s.providers or [] for k, s in self.sites.items()}
        lists["site.providers"] = self.site.providers or []
        for where, providers in lists.items():
            for provider in providers:
                if getattr(self, provider) is None:
                    raise ValueError(
                        f"{where} names {provider!r}, which has no {provider}: section"
                    )
            if len(set(providers)) != len(providers):
                raise ValueError(f"{where} names a provider twice")
            delivery = self.delivery
            if delivery.provider_timeout_s * len(providers) > delivery.send_timeout_s:
                raise ValueError(
                    f"{where}: {len(providers)} providers at delivery.provider_timeout_s "
                    f"({delivery.provider_timeout_s:g}) each exceed delivery.send_timeout_s "
                    f"({delivery.send_timeout_s:g}): the last would never be tried"
                )
        return self

    @field_validator("sites")
    @classmethod
    def _site_ids(cls, value: dict[str, SiteConfig]) -> dict[str, SiteConfig]:
        for key in value:
            if not re.fullmatch(SITE_ID, key):
                raise ValueError(
                    f"site id {key!r}: letters, digits, - and _ (up to 32), starting with a "
                    "letter or digit"
                )
        names = [s.name for s in value.values()]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"two sites are named {', '.join(map(repr, twice))}")
        return value


def load_config(path: Path, *, secrets: bool = True) -> Config:
    """Load and validate `path`; relative paths inside are relative to its folder.
    `secrets=False`: environment variables that are not set are left empty (commands
    that only read the store or hand work to the daemon need no Twilio token)."""
    data, lines = load_yaml(path, missing_ok=not secrets)
    if not isinstance(data, dict):
        raise InvalidInput([Problem(f"{path}:1", "the file must be a mapping of settings")])
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput(pydantic_problems(exc, lines)) from exc
    missing = [
        Problem(
            lines.where(("panels", name, "format")),
            f"no printer format {panel.format!r} under printer_formats",
        )
        for name, panel in config.panels.items()
        if panel.format and panel.format not in config.printer_formats
    ]
    if missing:
        raise InvalidInput(missing)
    base = path.parent
    return config.model_copy(
        update={
            "sites": {key: _site_paths(base, site) for key, site in config.sites.items()},
            "devices": base / config.devices,
            "playbooks": base / config.playbooks if config.playbooks else None,
            "staff": base / config.staff if config.staff else None,
            "storage": config.storage.model_copy(update={"path": base / config.storage.path}),
            **{
                name: section.model_copy(update={"templates": base / section.templates})
                for name in ("aliyun", "tencent")
                if (section := getattr(config, name)) is not None
            },
            "panels": {
                name: panel.model_copy(update={"port": _relative_to(base, panel.port)})
                for name, panel in config.panels.items()
            },
        }
    )


def panel_problems(config: Config, path: Path | str) -> list[Problem]:
    """Panels that can never be read: a printer format whose words the panel's
    `encoding` cannot spell (a GST panel prints 火警 in GB18030; left on ascii, no line
    ever matches, and no fire is ever seen)."""
    problems = []
    for name, panel in config.panels.items():
        spec = config.printer_formats.get(panel.format or "")
        if spec is None:
            continue
        words = [spec.pattern, *spec.types]
        try:
            for word in words:
                word.encode(panel.encoding)
        except UnicodeEncodeError as exc:
            seen = exc.object[exc.start : exc.end]
            problems.append(
                Problem(
                    f"{path} panels.{name}.encoding",
                    f"printer format {panel.format!r} reads {seen!r}, which {panel.encoding!r} "
                    "cannot carry: no line of this panel will ever match (Chinese panels print "
                    "in gb18030)",
                )
            )
    return problems


def _site_paths(base: Path, site: SiteConfig) -> SiteConfig:
    return site.model_copy(
        update={
            **{
                key: base / getattr(site, key)
                for key in ("devices", "staff", "playbooks")
                if getattr(site, key) is not None
            },
            "templates": {provider: base / path for provider, path in site.templates.items()},
        }
    )


def _relative_to(base: Path, port: str) -> str:
    """A relative device path is relative to the config file; URLs stay as they are."""
    if "://" in port or Path(port).is_absolute():
        return port
    return str(base / port)
