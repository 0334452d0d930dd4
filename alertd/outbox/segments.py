"""How many SMS segments a text costs (3GPP TS 23.038): GSM-7 fits 160 characters in one
segment (153 each when split), anything outside it makes the whole text UCS-2: 70 (67).
Residents' texts should fit one segment: split texts arrive out of order on some phones."""

from __future__ import annotations

GSM7_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
#: these cost two septets (an escape and the character)
GSM7_EXTENDED = "^{}\\[~]|€\f"


def is_gsm7(text: str) -> bool:
    return all(c in GSM7_BASIC or c in GSM7_EXTENDED for c in text)


def segments(text: str) -> int:
    if is_gsm7(text):
        units = sum(2 if c in GSM7_EXTENDED else 1 for c in text)
        single, multi = 160, 153
    else:
        units = sum(2 if ord(c) > 0xFFFF else 1 for c in text)  # UTF-16 code units
        single, multi = 70, 67
    return 1 if units <= single else -(-units // multi)
