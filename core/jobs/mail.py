"""Outgoing mail: build a plain-text and HTML message and hand it to an SMTP server.

Knows no feature: callers give a recipient, a subject and the two bodies. Mails are sent from
background jobs (core/jobs), never from a request: the person waiting for a link must not
learn from a response whether an account exists, and a flaky mail server must not take
sign-ups down with it. `deliver` raises when the server does not take a mail; the job that
raises is retried, so a mail server that is down for a while delays the mail instead of
losing it.
"""

import logging
import smtplib
from dataclasses import dataclass
from email.message import EmailMessage

from core.config import Settings
from core.observability import metrics
from core.observability.masking import mask_address, mask_addresses

logger = logging.getLogger("app.mail")

SMTP_TIMEOUT_SECONDS = 10


class MailNotDelivered(Exception):
    """The mail server could not be reached or refused a mail. Its message names the
    recipient masked and the cause, so the job's log lines say whose mail failed and why."""

    def __init__(self, recipient: str, cause: BaseException) -> None:
        super().__init__(
            f"mail to {mask_address(recipient)} not delivered: "
            f"{type(cause).__name__}: {mask_addresses(str(cause))}"
        )


def build_message(
    *, sender: str, recipient: str, subject: str, text: str, html: str
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = subject
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    return message


@dataclass(frozen=True, slots=True)
class Mailer:
    """SMTP delivery as configured; with no SMTP_HOST, mails go to the log instead."""

    host: str
    port: int
    user: str
    password: str
    starttls: bool
    ssl: bool
    sender: str
    # Mails written to the log carry live links: fine on a laptop, never in production.
    log_bodies: bool

    @classmethod
    def from_settings(cls, settings: Settings) -> "Mailer":
        return cls(
            host=settings.SMTP_HOST,
            port=settings.SMTP_PORT,
            user=settings.SMTP_USER,
            password=settings.SMTP_PASSWORD,
            starttls=settings.SMTP_STARTTLS,
            ssl=settings.SMTP_SSL,
            sender=settings.EMAILS_FROM,
            log_bodies=settings.ENVIRONMENT != "production",
        )

    @property
    def configured(self) -> bool:
        return bool(self.host)

    def deliver(self, *, recipient: str, subject: str, text: str, html: str) -> None:
        """Deliver one mail now, in this thread; raises MailNotDelivered when the server
        cannot be reached or refuses it. Without SMTP_HOST, writes it to the log."""
        message = build_message(
            sender=self.sender, recipient=recipient, subject=subject, text=text, html=html
        )
        if not self.configured:
            self._write_to_log(message, text)
            metrics.record_mail("skipped")
            return
        try:
            self._deliver(message)
        except (smtplib.SMTPException, OSError) as error:
            metrics.record_mail("failed")
            raise MailNotDelivered(recipient, error) from error
        metrics.record_mail("sent")

    def _deliver(self, message: EmailMessage) -> None:
        smtp: smtplib.SMTP
        if self.ssl:
            smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=SMTP_TIMEOUT_SECONDS)
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=SMTP_TIMEOUT_SECONDS)
        with smtp:
            if self.starttls and not self.ssl:
                smtp.starttls()
            if self.user:
                smtp.login(self.user, self.password)
            smtp.send_message(message)

    def _write_to_log(self, message: EmailMessage, text: str) -> None:
        recipient = str(message["To"])
        if self.log_bodies:
            logger.info(
                "mail (SMTP_HOST not set, not sent) to %s: %s\n%s",
                recipient,
                message["Subject"],
                text,
            )
        else:
            logger.warning("mail to %s dropped: SMTP_HOST is not set", mask_address(recipient))


def warn_when_unconfigured(settings: Settings) -> None:
    """Say once, at start-up, that mails will not leave this process."""
    if not settings.SMTP_HOST:
        where = "written to the log" if settings.ENVIRONMENT != "production" else "dropped"
        logger.warning("SMTP_HOST is not set: mails are %s, not sent", where)
