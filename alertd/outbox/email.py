"""E-mail through SMTP (stdlib smtplib, in a worker thread so the loop never blocks)."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from email.message import EmailMessage

from alertd.config import SmtpConfig
from alertd.outbox.sink import Message, Result


class EmailSink:
    def __init__(self, config: SmtpConfig) -> None:
        self._config = config

    async def send(self, message: Message) -> Result:
        email = EmailMessage()
        email["From"] = self._config.from_address
        email["To"] = message.recipient
        email["Subject"] = message.body.split("\n", 1)[0][:80]
        email.set_content(message.body)
        try:
            await asyncio.to_thread(self._deliver, email)
        except smtplib.SMTPRecipientsRefused as exc:
            return Result("permanent", f"SMTP refused the recipient: {_codes(exc)}")
        except ssl.SSLCertVerificationError as exc:
            return Result(
                "unavailable", f"SMTP server certificate not trusted: {exc.verify_message}"
            )
        except smtplib.SMTPResponseException as exc:
            if 500 <= exc.smtp_code < 600:
                return Result("permanent", f"SMTP {exc.smtp_code}")
            return Result("retryable", f"SMTP {exc.smtp_code}")
        except (OSError, smtplib.SMTPException) as exc:
            return Result("retryable", f"SMTP: {type(exc).__name__}")
        return Result("sent", provider_id=f"smtp:{message.id}")

    def _deliver(self, email: EmailMessage) -> None:
        c = self._config
        with smtplib.SMTP(c.host, c.port, timeout=c.timeout_s) as smtp:
            if c.starttls:
                # smtplib's default context checks no certificate: a man in the middle
                # would read staff alerts and the credentials
                smtp.starttls(context=ssl.create_default_context(cafile=c.ca_file))
            if c.username:
                smtp.login(c.username, c.password.get_secret_value() if c.password else "")
            smtp.send_message(email)

    async def close(self) -> None:
        return None


def _codes(exc: smtplib.SMTPRecipientsRefused) -> str:
    return ", ".join(str(code) for code, _ in exc.recipients.values())
