"""The words of the recovery feature's mails: a plain-text and an HTML body for each link."""

from dataclasses import dataclass
from datetime import timedelta
from html import escape


@dataclass(frozen=True, slots=True)
class MailContent:
    subject: str
    text: str
    html: str


def describe_lifetime(lifetime: timedelta) -> str:
    minutes = lifetime.total_seconds() / 60
    if minutes >= 120 and minutes % 60 == 0:
        return f"{int(minutes // 60)} hours"
    if minutes >= 2:
        return f"{round(minutes)} minutes"
    return "a minute" if minutes >= 1 else "less than a minute"


def _html(project: str, lines: list[str], link: str, action: str, footer: str) -> str:
    paragraphs = "".join(f"<p>{escape(line)}</p>" for line in lines)
    return (
        "<!DOCTYPE html><html><body>"
        f"<h2>{escape(project)}</h2>{paragraphs}"
        f'<p><a href="{escape(link, quote=True)}">{escape(action)}</a></p>'
        f"<p>{escape(footer)}</p>"
        "</body></html>"
    )


def _mail(
    project: str, subject: str, lines: list[str], action: str, link: str, footer: str
) -> MailContent:
    """The same words twice: as plain text, and as HTML with the link as a button-like anchor."""
    return MailContent(
        subject=f"{project}: {subject}",
        text="\n\n".join([*lines, f"{action}: {link}", footer]) + "\n",
        html=_html(project, lines, link, action, footer),
    )


def password_reset(project: str, link: str, lifetime: timedelta) -> MailContent:
    return _mail(
        project,
        "reset your password",
        [
            "Someone asked to reset the password of your account.",
            f"The link works once and expires in {describe_lifetime(lifetime)}.",
        ],
        "Reset your password",
        link,
        "If it was not you, ignore this mail: your password stays as it is.",
    )


def email_verification(project: str, link: str, lifetime: timedelta) -> MailContent:
    return _mail(
        project,
        "confirm your email address",
        [
            "Please confirm that this address belongs to your account.",
            f"The link expires in {describe_lifetime(lifetime)}.",
        ],
        "Confirm your address",
        link,
        "If you did not sign up, ignore this mail.",
    )
