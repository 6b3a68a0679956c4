"""Identities (an account as a provider knows it), the sign-in attempts between the
authorize and callback steps, the one-time codes a callback hands to the frontend, and the
schemas of their routes.

Nothing here holds a provider's token. An attempt holds its `state` and browser binding only
as SHA-256 digests, and its nonce and PKCE verifier in clear for the ten minutes it lives
(the callback needs them, and neither is worth anything without the state and the browser's
cookie). A one-time code is stored as its digest, beside the frontend's PKCE challenge.
"""

import uuid
from datetime import datetime

from sqlalchemy import DateTime, UniqueConstraint
from sqlmodel import Field, SQLModel

from core.data.clock import utc_now
from core.data.types import UTCDateTime
from core.oidc import SUBJECT_MAX_LENGTH
from features.users.models import CURRENT_PASSWORD_MAX_LENGTH, EMAIL_MAX_LENGTH

PROVIDER_MAX_LENGTH = 32
REDIRECT_URI_MAX_LENGTH = 2048
CODE_MAX_LENGTH = 128
# PKCE towards this API (RFC 7636): the frontend's S256 challenge is the base64url SHA-256 of
# its verifier, always 43 characters; a verifier is at most 128.
CODE_CHALLENGE_PATTERN = r"^[A-Za-z0-9_-]{43}$"
CODE_CHALLENGE_LENGTH = 43
CODE_VERIFIER_MAX_LENGTH = 128


class Identity(SQLModel, table=True):
    """An account at a provider (its subject), linked to one of ours."""

    __tablename__ = "identities"
    # One provider account signs in to one of ours, whatever races.
    __table_args__ = (UniqueConstraint("provider", "subject"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="users.id", ondelete="CASCADE", index=True)
    provider: str = Field(max_length=PROVIDER_MAX_LENGTH)
    subject: str = Field(max_length=SUBJECT_MAX_LENGTH)
    # The address the provider asserted when the identity was linked (for the owner's list).
    email: str | None = Field(default=None, max_length=EMAIL_MAX_LENGTH)
    created_at: datetime = Field(default_factory=utc_now, sa_type=DateTime(timezone=True))


class LoginAttempt(SQLModel, table=True):
    """A sign-in (or link) begun at the authorize step, waiting for the provider's callback:
    used once, within ATTEMPT_LIFETIME, by the browser that began it."""

    __tablename__ = "oidc_login_attempts"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    state_hash: str = Field(max_length=64, unique=True)
    # The digest of the random value in the browser's binding cookie.
    browser_hash: str = Field(max_length=64)
    provider: str = Field(max_length=PROVIDER_MAX_LENGTH)
    # Where the frontend wants the browser back: one of OIDC_REDIRECT_URIS.
    redirect_uri: str = Field(max_length=REDIRECT_URI_MAX_LENGTH)
    # The callback URL the provider was given: the code exchange must name it again.
    callback_uri: str = Field(max_length=REDIRECT_URI_MAX_LENGTH)
    nonce: str = Field(max_length=CODE_MAX_LENGTH)
    code_verifier: str = Field(max_length=CODE_MAX_LENGTH)
    # The frontend's PKCE challenge (S256): the one-time code is traded only with its
    # verifier, so a code that reaches another app or browser is worth nothing there. None
    # for a link, which hands out no code.
    code_challenge: str | None = Field(default=None, max_length=CODE_CHALLENGE_LENGTH)
    # Set when a signed-in account asked to link the provider, not to sign in.
    linking_user_id: uuid.UUID | None = Field(
        default=None, foreign_key="users.id", ondelete="CASCADE", index=True
    )
    # The session that asked, and the account's token_version then: the link goes through
    # only while that session lives and no password change (or sign-out everywhere) came
    # between (a stolen token that began a link is cut off with the rest of the account's).
    linking_session_id: uuid.UUID | None = None
    linking_token_version: int | None = None
    created_at: datetime = Field(default_factory=utc_now, sa_type=DateTime(timezone=True))
    expires_at: datetime = Field(sa_type=DateTime(timezone=True), index=True)


class ExchangeCode(SQLModel, table=True):
    """The one-time code a callback puts in the frontend's URL: traded once, within
    EXCHANGE_CODE_LIFETIME, for a token pair."""

    __tablename__ = "oidc_exchange_codes"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    code_hash: str = Field(max_length=64, unique=True)
    user_id: uuid.UUID = Field(foreign_key="users.id", ondelete="CASCADE", index=True)
    provider: str = Field(max_length=PROVIDER_MAX_LENGTH)
    # The attempt's PKCE challenge: the exchange must bring its verifier. None only on a code
    # the release before issued (nullable for the rolling deploy): such a code is refused.
    code_challenge: str | None = Field(default=None, max_length=CODE_CHALLENGE_LENGTH)
    created_at: datetime = Field(default_factory=utc_now, sa_type=DateTime(timezone=True))
    expires_at: datetime = Field(sa_type=DateTime(timezone=True), index=True)
    used_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class OidcProviderPublic(SQLModel):
    name: str = Field(description="Pass it to the authorize route; show it on a button")


class CodeExchange(SQLModel):
    code: str = Field(min_length=1, max_length=CODE_MAX_LENGTH)
    # Optional in the schema so that a missing verifier still spends the code (400), as a
    # wrong one does: the code is never worth a second try.
    code_verifier: str | None = Field(
        default=None,
        max_length=CODE_VERIFIER_MAX_LENGTH,
        description="The PKCE verifier whose S256 challenge the authorize step was given "
        "(required: without it, or with another, the code is refused and spent)",
    )


class LinkRequest(SQLModel):
    redirect_uri: str = Field(
        min_length=1,
        max_length=REDIRECT_URI_MAX_LENGTH,
        description="Where the browser comes back to: one of OIDC_REDIRECT_URIS",
    )
    # A stolen access token alone must not attach the thief's provider account (a way back
    # in that outlives a password change).
    current_password: str | None = Field(
        default=None,
        min_length=1,
        max_length=CURRENT_PASSWORD_MAX_LENGTH,
        schema_extra={"json_schema_extra": {"format": "password"}},
        description="Required when the account has a password; an account without one must "
        "have signed in within the last 10 minutes instead",
    )


class AuthorizationUrl(SQLModel):
    authorization_url: str = Field(description="Send the browser there (a navigation)")


class IdentityPublic(SQLModel):
    id: uuid.UUID
    provider: str
    subject: str = Field(description="The account's id at the provider")
    email: str | None = Field(description="The address the provider asserted at the link")
    created_at: UTCDateTime
