"""Password hashing and JWT access tokens: pure functions, no web framework.

bcrypt is slow on purpose, so the async helpers run it in worker threads behind a small
limiter: hashing never blocks the event loop, and a login flood queues behind a few threads
instead of taking all of them.
"""

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
from jose import JWTError, jwt
from passlib.context import CryptContext

ALGORITHM = "HS256"
ACCESS_TOKEN_TYPE = "access"  # noqa: S105 - a claim value, not a secret
# bcrypt reads only the first 72 bytes; longer passwords are refused, never truncated.
PASSWORD_MIN_BYTES = 8
PASSWORD_MAX_BYTES = 72


class InvalidTokenError(Exception):
    """The token is malformed, forged, expired or of the wrong kind."""


@dataclass(frozen=True, slots=True)
class AccessClaims:
    subject: str
    token_version: int
    jti: str


class PasswordHasher:
    """bcrypt through passlib, with a dummy hash so unknown accounts cost the same time."""

    def __init__(self, rounds: int, concurrency: int) -> None:
        self._context = CryptContext(schemes=["bcrypt"], bcrypt__rounds=rounds)
        self._limiter = anyio.CapacityLimiter(concurrency)
        self._dummy_hash = self._context.hash(secrets.token_urlsafe(16))

    def hash(self, password: str) -> str:
        return self._context.hash(password)

    def verify(self, password: str, hashed: str | None) -> bool:
        """Check a password; with no hash, burn the same time on the dummy and say no."""
        if hashed is None:
            self._context.verify(password, self._dummy_hash)
            return False
        return self._context.verify(password, hashed)

    async def hash_async(self, password: str) -> str:
        return await anyio.to_thread.run_sync(self.hash, password, limiter=self._limiter)

    async def verify_async(self, password: str, hashed: str | None) -> bool:
        return await anyio.to_thread.run_sync(self.verify, password, hashed, limiter=self._limiter)


def password_byte_length_error(password: str) -> str | None:
    """Why a password's UTF-8 length is unacceptable, or None when it is fine."""
    size = len(password.encode("utf-8"))
    if size < PASSWORD_MIN_BYTES:
        return f"must be at least {PASSWORD_MIN_BYTES} bytes"
    if size > PASSWORD_MAX_BYTES:
        return f"must be at most {PASSWORD_MAX_BYTES} bytes in UTF-8"
    return None


def create_access_token(
    *, subject: str, token_version: int, secret_key: str, expires_in: timedelta
) -> str:
    now = datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": subject,
        "ver": token_version,
        "type": ACCESS_TOKEN_TYPE,
        "iat": int(now.timestamp()),
        "exp": int((now + expires_in).timestamp()),
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, secret_key, algorithm=ALGORITHM)


def decode_access_token(token: str, *, secret_key: str) -> AccessClaims:
    """Verify signature, algorithm, expiry and kind; anything else is an InvalidTokenError."""
    try:
        claims = jwt.decode(
            token,
            secret_key,
            algorithms=[ALGORITHM],
            options={"require_exp": True, "require_sub": True, "require_iat": True},
        )
    except (JWTError, ValueError, TypeError, UnicodeError) as error:
        raise InvalidTokenError from error
    subject, version, jti = claims.get("sub"), claims.get("ver"), claims.get("jti")
    if (
        claims.get("type") != ACCESS_TOKEN_TYPE
        or not isinstance(subject, str)
        or type(version) is not int
        or not isinstance(jti, str)
    ):
        raise InvalidTokenError
    return AccessClaims(subject=subject, token_version=version, jti=jti)


def new_opaque_token() -> str:
    """A random bearer secret (refresh tokens, one-time links): 256 bits."""
    return secrets.token_urlsafe(32)


def digest_token(token: str) -> str:
    """What the database stores instead of a bearer secret: a leak of the table is no login."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
