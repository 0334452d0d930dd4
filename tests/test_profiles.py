"""Each profile fed the real formats of its ecosystem."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from alertd.devices import Device
from alertd.events import Kind, Observation
from integrations.mqtt.profiles import Decoded, PayloadError
from integrations.mqtt.router import Router
from tests.conftest import fixture_messages
from tests.helpers import device, profiles

PROFILES = profiles({})


def decode(dev: Device, topic: str, payload: str | bytes) -> Decoded:
    """Route `topic` as the daemon does and decode it with the device's profile."""
    router = Router([dev], PROFILES | profiles(CONFIGURED))
    routed = router.route(topic)
    assert routed is not None, f"{topic} is not routed to {dev.device_id}"
    targets, base, suffix = routed
    ((_, profile),) = targets
    data = payload.encode() if isinstance(payload, str) else payload
    return profile.decode(dev, base, suffix, data)


def kinds(decoded: Decoded) -> dict[Kind, bool]:
    return {o.kind: o.active for o in decoded.observations}


CONFIGURED: dict[str, dict[str, object]] = {
    "tasmota_mains": {
        "base": "tasmota",
        "offline_means": ["power.loss"],
        "rules": [
            {
                "topic": "tele/{topic}/SENSOR",
                "field": "ENERGY.Voltage",
                "kind": "power.loss",
                "below": 180,
                "restore_above": 200,
                "hold_s": 5,
            }
        ],
    },
    "nut_ups": {
        "availability": {"topic": "{topic}/status"},
        "rules": [
            {
                "topic": "{topic}/ups.status",
                "kind": "power.loss",
                "tokens": ["OB"],
                "restore_tokens": ["OL"],
            },
            {"topic": "{topic}/ups.status", "kind": "power.low_battery", "tokens": ["LB"]},
        ],
    },
}


# -- zigbee2mqtt ----------------------------------------------------------------------


class TestZigbee2Mqtt:
    leak = device(topic="zigbee2mqtt/basement/water_leak_boiler")
    smoke = device(topic="zigbee2mqtt/flat_3b/smoke_kitchen")
    plug = device(topic="zigbee2mqtt/plant_room/plug_sump_pump")

    def test_every_fixture_message_of_a_known_device_decodes(self) -> None:
        devices = [self.leak, self.smoke, self.plug]
        router = Router(devices, PROFILES)
        seen = 0
        for msg in fixture_messages("zigbee2mqtt.json"):
            routed = router.route(msg["topic"])
            if routed is None:
                continue
            ((dev, profile),) = routed[0]
            profile.decode(dev, routed[1], routed[2], msg["payload"].encode())
            seen += 1
        assert seen >= 8

    def test_leak_detected_and_cleared(self) -> None:
        wet = decode(
            self.leak,
            self.leak.topic,
            '{"battery":100,"battery_low":false,"linkquality":117,"temperature":21,'
            '"voltage":3015,"water_leak":true}',
        )
        assert kinds(wet) == {Kind.LEAK: True, Kind.DEVICE_BATTERY_LOW: False}
        assert wet.values["battery"] == 100
        assert wet.alive
        dry = decode(self.leak, self.leak.topic, '{"water_leak":false,"battery_low":true}')
        assert kinds(dry) == {Kind.LEAK: False, Kind.DEVICE_BATTERY_LOW: True}

    def test_smoke_with_ias_keys_tamper_and_test_button(self) -> None:
        alarm = decode(
            self.smoke,
            self.smoke.topic,
            '{"ac_status":false,"battery":100,"battery_low":false,"smoke":true,'
            '"tamper":false,"test":false,"trouble":false}',
        )
        assert kinds(alarm) == {
            Kind.FIRE_ALARM: True,
            Kind.DEVICE_TAMPER: False,
            Kind.DEVICE_BATTERY_LOW: False,
            Kind.FIRE_TROUBLE: False,
        }
        tested = decode(self.smoke, self.smoke.topic, '{"smoke":true,"test":true}')
        assert tested.observations[0] == Observation(Kind.FIRE_ALARM, True, detail="test button")
        tamper = decode(self.smoke, self.smoke.topic, '{"smoke":false,"tamper":true}')
        assert kinds(tamper) == {Kind.FIRE_ALARM: False, Kind.DEVICE_TAMPER: True}

    @pytest.mark.parametrize(
        ("payload", "offline"),
        [
            ('{"state":"offline"}', True),
            ('{"state":"online"}', False),
            ("offline", True),
            ("online", False),
        ],
    )
    def test_availability_json_and_legacy(self, payload: str, offline: bool) -> None:
        decoded = decode(self.leak, f"{self.leak.topic}/availability", payload)
        assert kinds(decoded) == {Kind.SENSOR_OFFLINE: offline}
        assert decoded.alive is not offline

    def test_plug_power_and_voltage_are_values(self) -> None:
        decoded = decode(
            self.plug,
            self.plug.topic,
            '{"current":2.61,"energy":148.72,"linkquality":156,"power":583,'
            '"power_outage_memory":"restore","state":"ON","voltage":231}',
        )
        assert decoded.observations == ()
        assert decoded.values == {
            "current": 2.61,
            "energy": 148.72,
            "linkquality": 156,
            "power": 583,
            "state": "ON",
            "voltage": 231,
        }

    def test_commands_to_the_device_are_not_reports(self) -> None:
        decoded = decode(self.plug, f"{self.plug.topic}/set", '{"state":"OFF"}')
        assert decoded.observations == ()
        assert not decoded.alive

    def test_last_seen_is_the_device_time(self) -> None:
        decoded = decode(
            self.leak,
            self.leak.topic,
            '{"water_leak":true,"last_seen":"2026-11-27T20:15:03+08:00"}',
        )
        assert decoded.observations[0].occurred_at == datetime(2026, 11, 27, 12, 15, 3, tzinfo=UTC)
        epoch = decode(self.leak, self.leak.topic, '{"water_leak":true,"last_seen":1764245703000}')
        assert epoch.observations[0].occurred_at == datetime.fromtimestamp(1764245703, UTC)

    def test_wrong_type_is_reported_and_the_rest_is_used(self) -> None:
        decoded = decode(self.leak, self.leak.topic, '{"water_leak":"yes","battery_low":true}')
        assert kinds(decoded) == {Kind.DEVICE_BATTERY_LOW: True}
        assert decoded.problems == ("water_leak must be true or false, got 'yes'",)

    @pytest.mark.parametrize("payload", ["{oops", "[1,2]", "42", '"text"', "\xff\xfe"])
    def test_malformed_state_is_rejected(self, payload: str) -> None:
        with pytest.raises(PayloadError):
            decode(self.leak, self.leak.topic, payload.encode("latin-1"))

    def test_bridge_topics_are_ignored_not_unknown(self) -> None:
        router = Router([self.leak], PROFILES)
        assert router.route("zigbee2mqtt/bridge/state") is None
        assert router.ignored("zigbee2mqtt/bridge/state")
        assert router.ignored("zigbee2mqtt/bridge/event")
        assert not router.ignored("zigbee2mqtt/some_new_sensor")
        assert router.subscriptions == ["zigbee2mqtt/#"]


# -- Tasmota -------------------------------------------------------------------------


class TestTasmota:
    plug = device(profile="tasmota", topic="tasmota_9CF9D1")
    mains = device(profile="tasmota_mains", topic="tasmota_mains_b3")

    def test_lwt(self) -> None:
        assert kinds(decode(self.plug, "tele/tasmota_9CF9D1/LWT", "Offline")) == {
            Kind.SENSOR_OFFLINE: True
        }
        assert kinds(decode(self.plug, "tele/tasmota_9CF9D1/LWT", "Online")) == {
            Kind.SENSOR_OFFLINE: False
        }
        with pytest.raises(PayloadError, match="Online or Offline"):
            decode(self.plug, "tele/tasmota_9CF9D1/LWT", "maybe")

    def test_sensor_energy_block_and_local_time(self) -> None:
        decoded = decode(
            self.plug,
            "tele/tasmota_9CF9D1/SENSOR",
            '{"Time":"2024-02-24T22:20:38","ENERGY":{"TotalStartTime":"2024-01-01T00:00:00",'
            '"Total":12.3,"Yesterday":0.5,"Today":0.2,"Power":50,"ApparentPower":55,'
            '"ReactivePower":10,"Factor":0.9,"Voltage":229,"Current":0.22}}',
        )
        assert decoded.values["Voltage"] == 229
        assert decoded.values["Power"] == 50
        assert decoded.values["Total"] == 12.3
        assert decoded.occurred_at == datetime(2024, 2, 24, 14, 20, 38, tzinfo=UTC)  # UTC+8

    def test_state_and_stat_power(self) -> None:
        state = decode(
            self.plug,
            "tele/tasmota_9CF9D1/STATE",
            '{"Time":"2024-02-24T22:20:38","Uptime":"0T00:10:11","POWER":"OFF"}',
        )
        assert state.values == {"POWER": "OFF"}
        assert decode(self.plug, "stat/tasmota_9CF9D1/POWER", "ON").values == {"POWER": "ON"}
        assert decode(self.plug, "stat/tasmota_9CF9D1/RESULT", '{"POWER1":"off"}').values == {
            "POWER1": "OFF"
        }

    def test_mains_voltage_threshold_with_hold(self) -> None:
        low = decode(
            self.mains,
            "tele/tasmota_mains_b3/SENSOR",
            '{"Time":"2026-11-27T03:00:00","ENERGY":{"Voltage":120,"Power":0}}',
        )
        assert low.observations == (
            Observation(Kind.POWER_LOSS, True, datetime(2026, 11, 26, 19, 0, tzinfo=UTC), 5.0),
        )
        dead_band = decode(self.mains, "tele/tasmota_mains_b3/SENSOR", '{"ENERGY":{"Voltage":190}}')
        assert dead_band.observations == ()
        back = decode(self.mains, "tele/tasmota_mains_b3/SENSOR", '{"ENERGY":{"Voltage":228}}')
        assert kinds(back) == {Kind.POWER_LOSS: False}
        # the base profile still reads its own topics
        assert kinds(decode(self.mains, "tele/tasmota_mains_b3/LWT", "Offline")) == {
            Kind.SENSOR_OFFLINE: True
        }

    def test_mains_monitor_offline_means_power_loss(self) -> None:
        router = Router([self.mains], PROFILES | profiles(CONFIGURED))
        assert router.devices[0].offline_means == (Kind.POWER_LOSS,)


# -- Shelly --------------------------------------------------------------------------


class TestShelly:
    flood = device(profile="shelly_gen1", topic="shellies/shellyflood-A1B2C3")
    relay = device(profile="shelly_gen1", topic="shellies/shelly1pm-84CCA8")
    plus = device("plus", profile="shelly_gen2", topic="shellyplus1pm-a8032ab12345")

    def test_gen1_flood_and_online(self) -> None:
        base = self.flood.topic
        assert kinds(decode(self.flood, f"{base}/sensor/flood", "true")) == {Kind.LEAK: True}
        assert kinds(decode(self.flood, f"{base}/sensor/flood", "false")) == {Kind.LEAK: False}
        assert kinds(decode(self.flood, f"{base}/online", "false")) == {Kind.SENSOR_OFFLINE: True}
        assert decode(self.flood, f"{base}/sensor/battery", "87").values == {"sensor/battery": 87.0}

    def test_gen1_relay_power(self) -> None:
        base = self.relay.topic
        assert decode(self.relay, f"{base}/relay/0", "on").values == {"relay/0": "on"}
        assert decode(self.relay, f"{base}/relay/0/power", "583.21").values == {
            "relay/0/power": 583.21
        }
        with pytest.raises(PayloadError):
            decode(self.relay, f"{base}/relay/0/power", "lots")
        assert not decode(self.relay, f"{base}/relay/0/command", "off").alive

    def test_gen1_gas(self) -> None:
        gas = device(profile="shelly_gen1", topic="shellies/shellygas-AABBCC")
        assert kinds(decode(gas, f"{gas.topic}/sensor/alarm_state", "heavy")) == {Kind.GAS: True}
        assert kinds(decode(gas, f"{gas.topic}/sensor/alarm_state", "none")) == {Kind.GAS: False}

    def test_gen2_switch_status(self) -> None:
        decoded = decode(
            self.plus,
            f"{self.plus.topic}/status/switch:0",
            '{"id":0,"source":"init","output":true,"apower":42.1,"voltage":229.8,"current":0.2,'
            '"aenergy":{"total":12.5,"by_minute":[0,0,0],"minute_ts":1700000000},'
            '"temperature":{"tC":40.1,"tF":104.2}}',
        )
        assert decoded.values == {
            "switch:0.output": True,
            "switch:0.apower": 42.1,
            "switch:0.voltage": 229.8,
            "switch:0.current": 0.2,
        }
        assert kinds(decode(self.plus, f"{self.plus.topic}/online", "false")) == {
            Kind.SENSOR_OFFLINE: True
        }

    def test_gen2_flood_and_smoke_via_notify_status(self) -> None:
        flood = device("pf", profile="shelly_gen2", topic="shellyplusflood-b0b21c1a2b3c")
        decoded = decode(
            flood,
            f"{flood.topic}/events/rpc",
            '{"src":"shellyplusflood-b0b21c1a2b3c","dst":"shellyplusflood-b0b21c1a2b3c/events",'
            '"method":"NotifyStatus","params":{"ts":1700000000.5,"flood:0":{"id":0,"alarm":true,'
            '"mute":false}}}',
        )
        assert decoded.observations == (
            Observation(Kind.LEAK, True, datetime.fromtimestamp(1700000000.5, UTC)),
        )
        smoke = decode(
            flood, f"{flood.topic}/status/smoke:0", '{"id":0,"alarm":false,"mute":false}'
        )
        assert kinds(smoke) == {Kind.FIRE_ALARM: False}

    def test_gen2_prefix_defaults_to_the_device_id(self) -> None:
        dev = device("shellyplus1-abc", profile="shelly_gen2", topic="")
        assert Router([dev], PROFILES).route("shellyplus1-abc/online") is not None


# -- Home Assistant style and configured profiles ---------------------------------------


class TestHomeAssistant:
    leak = device(
        profile="homeassistant",
        topic="bldg_a/leak/b2/state",
        kind="moisture",
        availability_topic="bldg_a/leak/b2/availability",
    )

    def test_on_off_and_availability(self) -> None:
        assert kinds(decode(self.leak, "bldg_a/leak/b2/state", "ON")) == {Kind.LEAK: True}
        assert kinds(decode(self.leak, "bldg_a/leak/b2/state", "OFF")) == {Kind.LEAK: False}
        assert kinds(decode(self.leak, "bldg_a/leak/b2/availability", "offline")) == {
            Kind.SENSOR_OFFLINE: True
        }
        with pytest.raises(PayloadError):
            decode(self.leak, "bldg_a/leak/b2/state", "PERHAPS")

    def test_power_class_on_means_power_present(self) -> None:
        mains = device(profile="homeassistant", topic="ups1/mains", kind="power")
        assert kinds(decode(mains, "ups1/mains", "OFF")) == {Kind.POWER_LOSS: True}
        assert kinds(decode(mains, "ups1/mains", "ON")) == {Kind.POWER_LOSS: False}

    def test_kind_column_is_required(self) -> None:
        router = Router([device(profile="homeassistant", topic="x/state")], PROFILES)
        assert router.devices == []
        assert "kind column" in str(router.problems[0])


class TestConfigured:
    ups = device(profile="nut_ups", topic="nut/ups1")

    def test_ups_status_tokens(self) -> None:
        on_battery = decode(self.ups, "nut/ups1/ups.status", "OB DISCHRG")
        assert kinds(on_battery) == {Kind.POWER_LOSS: True, Kind.POWER_LOW_BATTERY: False}
        low = decode(self.ups, "nut/ups1/ups.status", "OB LB")
        assert kinds(low) == {Kind.POWER_LOSS: True, Kind.POWER_LOW_BATTERY: True}
        assert kinds(decode(self.ups, "nut/ups1/ups.status", "OL CHRG")) == {
            Kind.POWER_LOSS: False,
            Kind.POWER_LOW_BATTERY: False,
        }
        assert kinds(decode(self.ups, "nut/ups1/status", "offline")) == {Kind.SENSOR_OFFLINE: True}

    def test_values_and_json_fields(self) -> None:
        facp = device(profile="facp", topic="facp1")
        spec = {
            "facp": {
                "rules": [
                    {
                        "topic": "{topic}/state",
                        "field": "panel.fire",
                        "kind": "fire.alarm",
                        "active": [True],
                        "restore": [False],
                    }
                ]
            }
        }
        router = Router([facp], PROFILES | profiles(spec))
        ((_, profile),) = router.route("facp1/state")[0]  # type: ignore[index]
        decoded = profile.decode(facp, "facp1/state", "", b'{"panel":{"fire":true}}')
        assert kinds(decoded) == {Kind.FIRE_ALARM: True}
        with pytest.raises(PayloadError, match="missing"):
            profile.decode(facp, "facp1/state", "", b'{"panel":{}}')
        with pytest.raises(PayloadError, match="neither"):
            profile.decode(facp, "facp1/state", "", b'{"panel":{"fire":"maybe"}}')


def test_subscriptions_do_not_overlap() -> None:
    devs = [
        device("a", topic="zigbee2mqtt/a"),
        device("b", topic="zigbee2mqtt/b"),
        device("c", profile="shelly_gen2", topic="plus-1"),
        device("d", profile="homeassistant", topic="plus-1/x", kind="leak"),
    ]
    # "x/#" also matches "x" itself, so "plus-1" and "plus-1/x" are left out
    assert Router(devs, PROFILES).subscriptions == ["zigbee2mqtt/#", "plus-1/#"]
