"""Email addresses in logs, masked: `jane@example.com` becomes `j***@example.com`.

Enough to trace a line to a support request, not enough to harvest addresses from the logs.
The mask works on any address a person can have: a Unicode local part (`иван@example.com`),
apostrophes and plus signs (`o'brien+news@example.com`), a quoted local part (`"jane doe"@...`).
core/observability/logging.py applies `mask_addresses` to every line it writes, exception text
included, so an address quoted by a database error or a mail server's refusal is masked too.
"""

import re

MASK = "***"

# Where an address may stand in free text: a quoted local part or a run of characters that
# are not spaces, quotes, brackets, slashes or separators, an @, and a domain (any script, or an
# address literal in brackets). Broad on purpose: masking a user name in a URL
# (`postgresql://app@db`) costs nothing, missing an address costs its owner.
_ADDRESS_IN_TEXT = re.compile(
    r"""(?P<local>"[^"\r\n]*"|[^\s"<>()\[\],;:@/]+)@(?P<domain>\[[^\]\s]*\]|[^\s"'`<>()\[\],;:@]+)"""
)


def _masked_local(local: str) -> str:
    """Punctuation in front (quotes, a repr's `{'`) as it is, then the first letter or digit,
    then the mask."""
    opening = next((index for index, char in enumerate(local) if char.isalnum()), 0)
    return f"{local[: opening + 1]}{MASK}"


def mask_address(address: str) -> str:
    """One address, as a log line may show it; `***` when it holds no @."""
    local, at, domain = address.rpartition("@")
    if not at or not local:
        return MASK
    return f"{_masked_local(local)}@{domain}"


def mask_addresses(text: str) -> str:
    """`text` with every address in it masked."""
    if "@" not in text:  # nearly every log line: no regex at all
        return text
    return _ADDRESS_IN_TEXT.sub(
        lambda found: f"{_masked_local(found['local'])}@{found['domain']}", text
    )
