"""The words of the auth feature's mails: a plain-text and an HTML body for each link."""

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


def password_reset(project: str, link: str, lifetime: timedelta) -> MailContent:
    lines = [
        "Someone asked to reset the password of your account.",
        f"The link works once and expires in {describe_lifetime(lifetime)}.",
    ]
    footer = "If it was not you, ignore this mail: your password stays as it is."
    return MailContent(
        subject=f"{project}: reset your password",
        text="\n\n".join([*lines, f"Reset your password: {link}", footer]) + "\n",
        html=_html(project, lines, link, "Reset your password", footer),
    )


def email_verification(project: str, link: str, lifetime: timedelta) -> MailContent:
    lines = [
        "Please confirm that this address belongs to your account.",
        f"The link expires in {describe_lifetime(lifetime)}.",
    ]
    footer = "If you did not sign up, ignore this mail."
    return MailContent(
        subject=f"{project}: confirm your email address",
        text="\n\n".join([*lines, f"Confirm your address: {link}", footer]) + "\n",
        html=_html(project, lines, link, "Confirm your address", footer),
    )
