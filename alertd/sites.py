"""The estates (小区) one alertd serves, as the configuration resolves them.

A configuration with a `site:` block alone is one site whose id is its name, so that a
store written before sites existed (its events and incidents say `site = name`) belongs
to it unchanged. With `sites:`, each entry is a site of its own: its id is what events,
incidents, residents and timers carry, its settings fall back on `site:` and on the
top level (devices file, staff file, broker, sender). Nothing is shared between two
sites but the playbooks and the company's staff who cover both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from alertd.config import Config, MqttConfig, SiteConfig
from alertd.directory.staff import Staff, TeamFile, load_staff, load_teams
from alertd.problems import Problem


@dataclass(frozen=True)
class Site:
    id: str
    name: str
    tz: ZoneInfo
    #: the region phone numbers without a country code belong to
    country: str
    #: the signature before each resident SMS, per language
    signatures: dict[str, str]
    unit_format: str | None
    #: the service centre's name on pages and reports
    centre: str
    devices: Path
    #: the site team's file (None: the company staff file alone)
    staff: Path | None
    #: playbooks of its own that replace shared ones of the same name
    playbooks: Path | None
    mqtt: MqttConfig
    from_number: str | None
    messaging_service_sid: str | None
    fallback_role: str
    #: SMS providers in the order tried
    providers: tuple[str, ...] = ()
    #: registered templates files, per provider (its own, else the provider's)
    templates: tuple[tuple[str, Path], ...] = ()


class Sites:
    """The sites by id (a site's name finds it too, as people type it)."""

    def __init__(self, sites: list[Site], *, several: bool) -> None:
        self._by_id = {s.id: s for s in sites}
        self._by_name = {s.name: s for s in sites}
        #: the `sites:` form: device ids are qualified with their site (`pine/smoke-1`),
        #: so two estates may number their devices alike
        self.several = several

    def __iter__(self) -> Iterator[Site]:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    @property
    def ids(self) -> list[str]:
        return list(self._by_id)

    def get(self, key: str) -> Site | None:
        return self._by_id.get(key) or self._by_name.get(key)

    @property
    def only(self) -> Site | None:
        """The site, when there is one: what a row or a command that names none means."""
        return next(iter(self._by_id.values())) if len(self._by_id) == 1 else None

    def find(self, key: str) -> Site:
        """The site `key` names (empty: the only one); ValueError says which exist."""
        site = self.get(key) if key else self.only
        if site is None:
            known = ", ".join(self.ids)
            what = f"unknown site {key!r}" if key else "which site?"
            raise ValueError(f"{what} (one of: {known})")
        return site

    def resident_site(self, chosen: str = "") -> Callable[[str], tuple[str, str]]:
        """What a residents file's site cell means: that site, else the `chosen` one (an
        import for one site), else the only one; (its id, its phone region)."""

        def site_of(cell: str) -> tuple[str, str]:
            site = self.find(cell or chosen)
            if chosen and cell and site is not self.find(chosen):
                raise ValueError(f"site {cell!r}, but this import is for site {chosen!r}")
            return site.id, site.country

        return site_of

    def zone(self, key: str) -> ZoneInfo | None:
        """The site's time zone (None: no such site; the caller's default)."""
        site = self.get(key)
        return site.tz if site else None

    def device_id(self, site: Site, device: str) -> str:
        return f"{site.id}/{device}" if self.several else device


def brokers(sites: Sites) -> list[tuple[MqttConfig, tuple[str, ...]]]:
    """Each broker and the sites it serves (a broker no site names is not connected to)."""
    out: dict[str, tuple[MqttConfig, list[str]]] = {}
    for site in sites:
        out.setdefault(_broker_key(site.mqtt), (site.mqtt, []))[1].append(site.id)
    return [(config, tuple(ids)) for config, ids in out.values()]


def _broker_key(config: MqttConfig) -> str:
    """One connection a broker: a site naming the shared one shares its connection."""
    return f"{config.host}:{config.port}"


def sites_of(config: Config) -> Sites:
    """The configured sites, resolved."""
    if not config.sites:
        return Sites([_site(config, config.site.name, config.site)], several=False)
    return Sites([_site(config, key, entry) for key, entry in config.sites.items()], several=True)


def _site(config: Config, key: str, entry: SiteConfig) -> Site:
    twilio = config.twilio
    return Site(
        id=key,
        name=entry.name if config.sites else key,
        tz=entry.tz,
        country=entry.country,
        signatures=entry.signatures,
        unit_format=entry.unit_format,
        centre=entry.centre or config.console.centre or entry.name,
        devices=entry.devices or config.devices,
        staff=entry.staff if config.sites else config.staff,
        playbooks=entry.playbooks if config.sites else None,
        mqtt=entry.mqtt or config.mqtt,
        # a sender is a pair: a site naming either has its own, else twilio's
        **(
            {"from_number": entry.from_number, "messaging_service_sid": entry.messaging_service_sid}
            if entry.from_number or entry.messaging_service_sid
            else {
                "from_number": twilio.from_number if twilio else None,
                "messaging_service_sid": twilio.messaging_service_sid if twilio else None,
            }
        ),
        fallback_role=entry.fallback_role or config.delivery.fallback_role,
        providers=tuple(entry.providers or config.delivery.providers),
        templates=tuple(
            {
                **{p: s.templates for p in ("aliyun", "tencent") if (s := getattr(config, p))},
                **(entry.templates if config.sites else config.site.templates),
            }.items()
        ),
    )


def has_staff(config: Config) -> bool:
    return config.staff is not None or any(s.staff for s in sites_of(config))


def load_company_staff(config: Config, in_force: Staff | None = None) -> Staff:
    """The staff file (with one site) or the company's and every site team's. `in_force`
    (a reload): a site team whose file is broken stays as it was (said in `problems`)."""
    sites = sites_of(config)
    if not sites.several:
        assert config.staff is not None
        return load_staff(config.staff, config.site.country, config.site.tz)
    teams = [TeamFile(s.id, s.staff, s.country, s.tz) for s in sites if s.staff is not None]
    return load_teams(
        config.staff, teams, config.site.country, config.site.tz, set(sites.ids), in_force
    )


def site_problems(config: Config, path: Path | str) -> list[Problem]:
    """Panels and receiver accounts placed at no configured site (or, with several, at
    none), and, with a Twilio account, sites with no sender."""
    sites = sites_of(config)
    places = [
        (f"panels.{name}", panel.place, panel.zones) for name, panel in config.panels.items()
    ] + [
        (f"receivers.{name}.accounts.{number}", account.place, account.zones)
        for name, receiver in config.receivers.items()
        for number, account in receiver.accounts.items()
    ]
    problems = []
    for key, place, zones in places:
        cells = [(f"{key}.place.site", place.site)] + [
            (f"{key}.zones.{zone}.site", where.site) for zone, where in zones.items() if where.site
        ]
        for where, cell in cells:
            if (cell and sites.get(cell) is None) or (not cell and sites.only is None):
                known = ", ".join(sites.ids)
                said = f"unknown site {cell!r}" if cell else "which site is it at?"
                problems.append(Problem(f"{path} {where}", f"{said} (one of: {known})"))
            elif cell and cell not in sites.ids:
                site = sites.find(cell)
                problems.append(
                    Problem(
                        f"{path} {where}", f"{cell!r} is a name: write the site's id {site.id!r}"
                    )
                )
    first: dict[str, Site] = {}
    for site in sites:  # one connection a broker: the first site's settings serve them all
        shared = first.setdefault(_broker_key(site.mqtt), site)
        mine, theirs = site.mqtt, shared.mqtt
        if (mine.client_id, mine.username, mine.tls) != (
            theirs.client_id,
            theirs.username,
            theirs.tls,
        ):
            problems.append(
                Problem(
                    f"{path} sites.{site.id}.mqtt",
                    f"the broker of site {shared.id!r} with another client_id, username or "
                    f"tls: one connection serves both, with site {shared.id!r}'s settings",
                )
            )
    if config.twilio is not None:
        problems += [
            Problem(
                f"{path} sites.{s.id}", "no SMS sender: set from_number or messaging_service_sid"
            )
            for s in sites
            if not (s.from_number or s.messaging_service_sid)
        ]
    return problems
