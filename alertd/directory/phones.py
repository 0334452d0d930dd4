"""Phone numbers: validated and normalised to E.164, and masked for display."""

from __future__ import annotations

import phonenumbers


def normalise(raw: str, region: str) -> str:
    """E.164 (+8613800001203) from what people type; ValueError says what is wrong."""
    text = raw.strip()
    if not text:
        raise ValueError("phone is empty")
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"phone {raw!r} is not a phone number ({exc})") from None
    if not phonenumbers.is_valid_number(number):
        where = "" if text.startswith("+") else f" (read as a number in {region})"
        raise ValueError(f"phone {raw!r} is not a valid number{where}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def mask(e164: str) -> str:
    """+8613800001203 -> +86 138****1203: enough to tell numbers apart, not to call."""
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return "****"
    national = str(number.national_number)
    keep = national[:3] if len(national) > 8 else national[:1]
    return f"+{number.country_code} {keep}{'*' * 4}{national[-4:]}"
