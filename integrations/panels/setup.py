"""Panels and receivers as the daemon runs them, built from the configuration."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import tzinfo

from alertd.clock import Clock
from alertd.devices import Device
from alertd.events import Location
from alertd.ingest.report import Rejected, Report
from integrations.panels import alarmdecoder, contact_id, surgard
from integrations.panels.printer import PrinterParser
from integrations.panels.receiver import Dc09Receiver
from integrations.panels.serial_link import SerialLink
from integrations.panels.signal import FrameError, Reading
from integrations.panels.source import PanelSource, place_location
from integrations.panels.spec import PanelConfig, PrinterFormat, ReceiverConfig

Submit = Callable[[Report | Rejected], None]
log = logging.getLogger(__name__)


@dataclass
class Panels:
    devices: list[Device] = field(default_factory=list)
    links: list[SerialLink] = field(default_factory=list)
    receivers: list[Dc09Receiver] = field(default_factory=list)
    sources: dict[str, PanelSource] = field(default_factory=dict)


def line_parser(
    config: PanelConfig, formats: Mapping[str, PrinterFormat], tz: tzinfo, clock: Clock
) -> Callable[[str], Reading]:
    if config.protocol == "alarmdecoder":
        return alarmdecoder.Reader().read
    if config.protocol == "contact_id":
        return contact_id.read
    if config.protocol == "surgard_mlr2":
        return surgard.read
    assert config.format is not None
    return PrinterParser(config.format, formats[config.format], tz, clock).read


def build(
    panels: Mapping[str, PanelConfig],
    receivers: Mapping[str, ReceiverConfig],
    formats: Mapping[str, PrinterFormat],
    *,
    site: str,
    tz: tzinfo,
    submit: Submit,
    clock: Clock,
) -> Panels:
    out = Panels()
    for name, config in panels.items():
        device = Device(
            name,
            f"panel:{config.protocol}",
            config.port,
            place_location(config.place, site),
            config.heartbeat_s,
        )
        source = PanelSource(device, config.zones, submit, clock, f"serial:{config.protocol}")
        out.devices.append(device)
        out.sources[name] = source
        out.links.append(_link(name, config, source, line_parser(config, formats, tz, clock)))
    for name, receiver in receivers.items():
        sources: dict[str, PanelSource] = {}
        for acct, account in receiver.accounts.items():
            device = Device(
                f"sia:{acct}",
                "panel:sia-dc09",
                f"{name}#{acct}",
                place_location(account.place, site),
                account.heartbeat_s,
            )
            sources[acct] = PanelSource(device, account.zones, submit, clock, "sia-dc09")
            out.devices.append(device)
        out.sources.update({s.panel.device_id: s for s in sources.values()})
        out.receivers.append(
            Dc09Receiver(name, receiver, sources, _unknown(name, site, submit, clock), clock)
        )
    return out


def _link(
    name: str, config: PanelConfig, source: PanelSource, parse: Callable[[str], Reading]
) -> SerialLink:
    encoding = config.encoding

    def on_line(raw: bytes) -> None:
        try:
            text = raw.decode(encoding)
            reading = parse(text)
        except UnicodeDecodeError:
            source.reject(
                f"line is not {encoding} (garbage on the wire, a wrong baud rate, or the "
                "panel prints in another encoding: set `encoding`)",
                raw,
            )
            return
        except FrameError as exc:
            source.reject(str(exc), raw)
            return
        except Exception as exc:
            log.exception("panel %s: parser failed on %r", name, raw[:80])
            source.reject(f"could not read it ({type(exc).__name__}); kept for inspection", raw)
            return
        for line in reading.unread:
            source.reject(f"line does not match printer format: {line[:80]!r}", line.encode())
        source.report(reading, text)

    return SerialLink(
        name, config, on_line, lambda why, raw: source.reject(why, raw), source.link_down
    )


def _unknown(
    receiver: str, site: str, submit: Submit, clock: Clock
) -> Callable[[str], PanelSource]:
    """Accounts missing from the configuration still report (a fire is a fire); their
    events carry the account, with no place."""
    made: dict[str, PanelSource] = {}

    def source(acct: str) -> PanelSource:
        if acct not in made:
            device_id = f"sia:{acct}" if acct else f"receiver:{receiver}"
            device = Device(
                device_id,
                "panel:sia-dc09",
                f"{receiver}#{acct}",
                Location(site=site),
                tags={"account": "not configured"},
            )
            flag = f"account {acct} is not in receiver {receiver}'s configuration" if acct else ""
            made[acct] = PanelSource(device, {}, submit, clock, "sia-dc09", flag)
        return made[acct]

    return source
