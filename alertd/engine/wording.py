"""Words for people: what happened and where, in Chinese and in English.

Staff and residents never read a raw kind (`fire.alarm`) or a half-translated place;
every text, title and report line that names a place goes through here."""

from __future__ import annotations

import re
from datetime import datetime, tzinfo
from functools import lru_cache
from itertools import pairwise

from alertd.events import Kind, Location

LANGUAGES = ("zh", "en")

KINDS: dict[Kind, tuple[str, str]] = {
    Kind.FIRE_ALARM: ("火警", "Fire alarm"),
    Kind.FIRE_SUPERVISORY: ("消防监管信号", "Fire supervisory signal"),
    Kind.FIRE_TROUBLE: ("消防系统故障", "Fire system trouble"),
    Kind.LEAK: ("漏水", "Water leak"),
    Kind.GAS: ("燃气泄漏", "Gas leak"),
    Kind.POWER_LOSS: ("停电", "Power cut"),
    Kind.POWER_LOW_BATTERY: ("备用电池电量低", "Backup battery low"),
    Kind.SENSOR_OFFLINE: ("设备离线", "Device offline"),
    Kind.DEVICE_BATTERY_LOW: ("设备电量低", "Device battery low"),
    Kind.DEVICE_TAMPER: ("设备被拆动", "Device tampered with"),
    Kind.MANUAL: ("紧急情况", "Emergency"),
    Kind.UNKNOWN: ("未知信号", "Unknown signal"),
}

#: rooms and places as devices files usually name them, both ways
ZONES: list[tuple[str, str]] = [
    ("厨房", "kitchen"),
    ("卫生间", "bathroom"),
    ("浴室", "shower room"),
    ("客厅", "living room"),
    ("卧室", "bedroom"),
    ("阳台", "balcony"),
    ("走廊", "corridor"),
    ("楼梯间", "stairwell"),
    ("大堂", "lobby"),
    ("电梯厅", "lift lobby"),
    ("配电房", "switch room"),
    ("水泵房", "pump room"),
    ("地下车库", "car park"),
    ("机房", "plant room"),
    ("门厅", "hall"),
    ("走廊", "hallway"),
    ("管井", "riser"),
    ("楼梯", "stairs"),
    ("楼梯", "staircase"),
    ("屋顶", "roof"),
    ("地下室", "basement"),
    ("车库", "garage"),
    ("锅炉房", "boiler room"),
    ("电表间", "meter room"),
    ("储藏室", "store"),
    ("储藏室", "storage"),
    ("电梯", "lift"),
    ("电梯", "elevator"),
    ("电梯井", "lift shaft"),
    ("入口", "entrance"),
    ("办公室", "office"),
    ("设备间", "utility room"),
    ("洗衣房", "laundry"),
    ("书房", "study"),
    ("餐厅", "dining room"),
    ("水箱间", "water tank room"),
    ("发电机房", "generator room"),
    ("消防泵房", "fire pump room"),
    ("消防控制室", "fire control room"),
    ("值班室", "guard room"),
    ("东", "east"),
    ("西", "west"),
    ("南", "south"),
    ("北", "north"),
]
#: each name to its pair; where a name has two translations the first is the one used
_ZONE: dict[str, dict[str, tuple[str, str]]] = {lang: {} for lang in LANGUAGES}
for _pair in ZONES:
    for _i, _lang in enumerate(LANGUAGES):
        _ZONE[_lang].setdefault(_pair[_i].lower(), _pair)
#: the longest English phrase, in words: "fire control room" is 3
_LONGEST = max(len(en.split()) for _, en in ZONES)


def kind_words(kind: Kind | str, language: str) -> str:
    try:
        words = KINDS[Kind(kind)]
    except ValueError:
        return str(kind)
    return words[LANGUAGES.index(language)]


def _zone(zone: str, language: str) -> str:
    """A zone in `language`: a known name as a whole, or (English into Chinese) word by
    word, the longest known phrase first, numbers and unknown words kept: `riser 1` is
    `管井1`, `east hall` is `东门厅`; a Chinese text never shows a half-English place
    that has a translation."""
    index = LANGUAGES.index(language)
    for table in _ZONE.values():
        pair = table.get(zone.strip().lower())
        if pair is not None:
            return pair[index]
    if language != "zh" or _cjk(zone):
        return zone
    words, out = zone.split(), []
    while words:
        for size in range(min(_LONGEST, len(words)), 0, -1):
            pair = _ZONE["en"].get(" ".join(words[:size]).lower())
            if pair is not None:
                out.append(pair[0])
                break
        else:
            size = 1
            out.append(words[0])
        words = words[size:]
    text = out[0]
    for before, word in pairwise(out):  # spaces between Latin words only
        text += word if _cjk(before) or _cjk(word) else f" {word}"
    return text


def _cjk(text: str) -> bool:
    return any("\u4e00" <= c <= "\u9fff" for c in text)


@lru_cache(maxsize=8192)
def place(location: Location, language: str) -> str:
    """`3号楼 12层 1203 厨房` or `Bldg 3, 12F, 1203 kitchen` (the site is left out: one
    site's staff know it; templates have `site` when several share a number)."""
    b, f, u, z = location.building, location.floor, location.unit, location.zone
    zone = _zone(z, language) if z else ""
    if language == "zh":
        parts = [
            b and (b if _cjk(b) else f"{b}号楼" if b.isdigit() else f"{b}栋"),
            f and (f if f.endswith("层") else f"{f}层"),
            u,
            zone,
        ]
        return " ".join(p for p in parts if p)
    head = [
        b and (b if b.lower().startswith(("bldg", "building")) else f"Bldg {b}"),
        f and (f"{f}F" if f.isdigit() else f),
    ]
    tail = " ".join(p for p in (u, zone) if p)
    return ", ".join(p for p in [*head, tail] if p)


FLOOR = re.compile(r"\d+F")


def reword_place(text: str, language: str) -> str:
    """A place the record wrote in English (`Bldg 3, 12F, 1203 kitchen`, what `place`
    makes) in `language`; a text that does not read as one (a masked number) as it is."""
    parts = text.split(", ")
    if not parts[0].startswith(("Bldg ", "Building ")) or len(parts) > 3:
        return text
    building = parts.pop(0).removeprefix("Bldg ")
    floor = parts.pop(0) if len(parts) == 2 or (parts and FLOOR.fullmatch(parts[0])) else ""
    unit, _, zone = (parts[0] if parts else "").partition(" ")
    if unit and not any(c.isdigit() for c in unit):  # a zone alone: `lobby`
        unit, zone = "", f"{unit} {zone}".strip()
    floor = floor[:-1] if FLOOR.fullmatch(floor) else floor
    return place(Location("", building, floor, unit, zone), language)


@lru_cache(maxsize=8192)
def title(kind: Kind | str, location: Location) -> str:
    """One line for lists and reports, both languages: `火警 3号楼 … / Fire alarm, Bldg 3 …`."""
    zh = f"{kind_words(kind, 'zh')} {place(location, 'zh')}".strip()
    en_place = place(location, "en")
    en = kind_words(kind, "en") + (f", {en_place}" if en_place else "")
    return f"{zh} / {en}"


def local_time(at: datetime, tz: tzinfo, now: datetime, language: str) -> str:
    """A time residents can read: `18:30` today, `12月1日 18:30` / `1 Dec 18:30` otherwise."""
    local, today = at.astimezone(tz), now.astimezone(tz).date()
    if local.date() == today:
        return f"{local:%H:%M}"
    if language == "zh":
        return f"{local.month}月{local.day}日 {local:%H:%M}"
    return f"{local.day} {local:%b %H:%M}"


def stamp(at: datetime, tz: tzinfo) -> str:
    """A time for lists, logs and reports: local, with its offset (`2026-11-27 10:00:00 +08:00`)."""
    local = at.astimezone(tz)
    offset = local.strftime("%z")
    return f"{local:%Y-%m-%d %H:%M:%S} {offset[:3]}:{offset[3:]}"
