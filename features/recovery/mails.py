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
    if minutes >= 2 * 24 * 60 and minutes % (24 * 60) == 0:
        return f"{int(minutes // (24 * 60))} days"
    if minutes >= 120 and minutes % 60 == 0:
        return f"{int(minutes // 60)} hours"
    if minutes >= 2:
        return f"{round(minutes)} minutes"
    return "a minute" if minutes >= 1 else "less than a minute"


def _html(project: str, lines: list[str], link: str, action: str, footer: str) -> str:
    paragraphs = "".join(f"<p>{escape(line)}</p>" for line in lines)
    button = f'<p><a href="{escape(link, quote=True)}">{escape(action)}</a></p>' if link else ""
    return (
        "<!DOCTYPE html><html><body>"
        f"<h2>{escape(project)}</h2>{paragraphs}{button}"
        f"<p>{escape(footer)}</p>"
        "</body></html>"
    )


def _mail(
    project: str, subject: str, lines: list[str], action: str, link: str, footer: str
) -> MailContent:
    """The same words twice: as plain text, and as HTML with the link (if any) as a
    button-like anchor."""
    action_line = [f"{action}: {link}"] if link else []
    return MailContent(
        subject=f"{project}: {subject}",
        text="\n\n".join([*lines, *action_line, footer]) + "\n",
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


def address_changed(project: str, link: str, lifetime: timedelta) -> MailContent:
    """To the previous address, after the account moved to another one."""
    return _mail(
        project,
        "your account's email address was changed",
        [
            "The email address of your account was just changed, so this address no longer "
            "signs in.",
            "If you did not make this change, follow the link to put this address back and "
            "sign out every session, then reset your password. "
            f"The link works once and expires in {describe_lifetime(lifetime)}.",
        ],
        "Put this address back",
        link,
        "If you made the change yourself, ignore this mail.",
    )


def password_changed(project: str) -> MailContent:
    """To the account's address, after its password was changed or reset."""
    return _mail(
        project,
        "your password was changed",
        [
            "The password of your account was just changed, and every session signed in "
            "before has been signed out.",
            "If you did not do this, ask for a password reset right away.",
        ],
        "",
        "",
        "If it was you, there is nothing more to do.",
    )
