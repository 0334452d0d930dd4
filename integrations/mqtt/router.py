"""Which device (and profile) owns a topic, and what to subscribe to."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from alertd.devices import Device
from alertd.problems import Problem
from integrations.mqtt.profiles import Profile

Target = tuple[Device, Profile]


class Router:
    def __init__(self, devices: Iterable[Device], profiles: Mapping[str, Profile]) -> None:
        self._profiles = profiles
        self.devices: list[Device] = []
        self.problems: list[Problem] = []
        self._bases: dict[str, list[Target]] = {}
        ignored: set[str] = set()
        filters: list[str] = []
        for device in devices:
            profile = profiles[device.profile]
            complaints = profile.check(device)
            if complaints:
                self.problems.extend(
                    Problem(f"device {device.device_id}", f"skipped: {c}") for c in complaints
                )
                continue
            if profile.offline_means:
                device = dataclasses.replace(device, offline_means=profile.offline_means)
            self.devices.append(device)
            for base in profile.bases(device):
                self._bases.setdefault(base, []).append((device, profile))
            ignored.update(profile.ignored_prefixes(device))
            filters.extend(profile.subscriptions(device))
        self._ignored = tuple(sorted(ignored))
        self.subscriptions = _minimal(filters)

    def only(self, sites: Iterable[str]) -> Router:
        """The devices of these sites alone (those one broker serves)."""
        keep = set(sites)
        return Router([d for d in self.devices if d.location.site in keep], self._profiles)

    def route(self, topic: str) -> tuple[list[Target], str, str] | None:
        """The devices owning `topic`, the base topic they own, and the rest of the topic."""
        base, suffix = topic, ""
        while True:
            targets = self._bases.get(base)
            if targets:
                return targets, base, suffix
            head, sep, tail = base.rpartition("/")
            if not sep:
                return None
            base, suffix = head, f"{tail}/{suffix}" if suffix else tail

    def ignored(self, topic: str) -> bool:
        return any(topic == p or topic.startswith(p + "/") for p in self._ignored)


def _minimal(filters: Iterable[str]) -> list[str]:
    """Drop filters already covered by a `x/#` one: overlapping subscriptions may make a
    broker deliver the same message twice."""
    unique = list(dict.fromkeys(filters))
    wild = [f[:-2] for f in unique if f.endswith("/#")]
    return [
        f
        for f in unique
        if not any(f != w + "/#" and (f == w or f.startswith(w + "/")) for w in wild)
    ]
