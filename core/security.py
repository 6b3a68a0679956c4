"""Password hashing and JWT access tokens: pure functions, no web framework.

bcrypt is slow on purpose, so the async helpers run it on a small pool of its own threads:
hashing never blocks the event loop, a login flood queues behind a few threads instead of
taking all of them, and those threads run at a lower CPU priority so the event loop keeps
answering cheap requests while they work.
"""

import asyncio
import contextlib
import hashlib
import os
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property, lru_cache
from typing import Any, TypeVar

from jose import JWTError, jwt
from passlib.context import CryptContext

from core.concurrency import place_handed_on
from core.observability import metrics

T = TypeVar("T")

ALGORITHM = "HS256"
ACCESS_TOKEN_TYPE = "access"  # noqa: S105 - a claim value, not a secret
# NIST SP 800-63B counts a password's length in characters (code points); bcrypt reads at
# most 72 bytes of it, so a longer one is refused rather than silently cut.
PASSWORD_MIN_CHARACTERS = 8
PASSWORD_MAX_BYTES = 72


class InvalidTokenError(Exception):
    """The token is malformed, forged, expired or of the wrong kind."""


@dataclass(frozen=True, slots=True)
class AccessClaims:
    subject: str
    token_version: int
    jti: str
    # The signed-in session the token belongs to: ending that session ends the token.
    session_id: str


# The lowest priority that still gets CPU under load (SCHED_IDLE could starve logins for as
# long as other work keeps the cores busy); event-loop threads outweigh it about 70 to 1.
HASHING_THREAD_NICENESS = 19
BCRYPT_ALPHABET = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def _lower_thread_priority() -> None:
    # On Linux a thread has its own nice value, so this demotes only the hashing thread.
    # Elsewhere (not Linux, or not permitted) it simply runs at normal priority.
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASHING_THREAD_NICENESS)


class PasswordHasher:
    """bcrypt through passlib, with a dummy hash so unknown accounts cost the same time."""

    def __init__(self, rounds: int, concurrency: int) -> None:
        self._context = CryptContext(schemes=["bcrypt"], bcrypt__rounds=rounds)
        self._rounds = rounds
        self._concurrency = concurrency

    @cached_property
    def _executor(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(
            max_workers=self._concurrency,
            thread_name_prefix="bcrypt",
            initializer=_lower_thread_priority,
        )

    @cached_property
    def _dummy_hash(self) -> str:
        """A well-formed bcrypt hash at the configured cost that matches no password.

        Verifying against it costs exactly what a real verify costs (the cost factor is in
        the string), and building it costs nothing: no hashing at start-up.
        """
        salt = "".join(secrets.choice(BCRYPT_ALPHABET) for _ in range(21)) + "."
        checksum = "".join(secrets.choice(BCRYPT_ALPHABET) for _ in range(30)) + "."
        # "." in the last place leaves the unused low bits zero, as bcrypt requires.
        return f"$2b${self._rounds:02d}${salt}{checksum}"

    def hash(self, password: str) -> str:
        return self._context.hash(password)

    def verify(self, password: str, hashed: str | None) -> bool:
        """Check a password; with no hash, burn the same time on the dummy and say no."""
        if "\x00" in password:
            # bcrypt raises on NUL, and no stored password has one (they are refused at the
            # door): a plain "no", after the same work as any other attempt.
            self._context.verify("\x01" * PASSWORD_MIN_CHARACTERS, self._dummy_hash)
            return False
        if hashed is None:
            self._context.verify(password, self._dummy_hash)
            return False
        matches = self._context.verify(password, hashed)
        if not matches and bcrypt_cost(hashed) < self._rounds:
            # A hash from before BCRYPT_ROUNDS was raised checks faster than the dummy that
            # unknown addresses cost: a "no" for it costs the configured work on top, so the
            # time of a wrong password does not tell which accounts exist.
            self._context.verify(password, self._dummy_hash)
        return matches

    def needs_rehash(self, hashed: str) -> bool:
        """True when `hashed` was made at another cost than the configured one."""
        return bcrypt_cost(hashed) != self._rounds

    async def hash_async(self, password: str) -> str:
        return await self._on_hashing_thread(self.hash, password)

    async def verify_async(self, password: str, hashed: str | None) -> bool:
        return await self._on_hashing_thread(self.verify, password, hashed)

    async def _on_hashing_thread(self, work: Callable[..., T], *args: Any) -> T:
        future = self._executor.submit(work, *args)
        # Queued and running hashes, per worker: app_bcrypt_queue_depth.
        metrics.track_password_hashing(future)
        # A login waiting for bcrypt takes no event-loop time: it does not keep a place among
        # the requests in progress (core/concurrency.py), so a login flood cannot crowd out
        # everything else.
        async with place_handed_on():
            return await asyncio.wrap_future(future)

    def shutdown(self) -> None:
        if "_executor" in self.__dict__:
            self._executor.shutdown(wait=False, cancel_futures=True)


def bcrypt_cost(hashed: str) -> int:
    """The cost (log2 rounds) a bcrypt hash was made with: `$2b$12$...` -> 12; 0 when the
    string is not a bcrypt hash."""
    parts = hashed.split("$")
    return int(parts[2]) if len(parts) > 3 and parts[2].isdigit() else 0


def password_length_error(password: str) -> str | None:
    """Why a password's length is unacceptable (at least 8 characters, at most 72 bytes in
    UTF-8), or None when it is fine."""
    if len(password) < PASSWORD_MIN_CHARACTERS:
        return f"must be at least {PASSWORD_MIN_CHARACTERS} characters"
    if len(password.encode("utf-8")) > PASSWORD_MAX_BYTES:
        return f"must be at most {PASSWORD_MAX_BYTES} bytes in UTF-8"
    return None


def create_access_token(
    *,
    subject: str,
    token_version: int,
    session_id: str,
    secret_key: str,
    expires_in: timedelta,
) -> str:
    now = datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": subject,
        "ver": token_version,
        "sid": session_id,
        "type": ACCESS_TOKEN_TYPE,
        "iat": int(now.timestamp()),
        "exp": int((now + expires_in).timestamp()),
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, secret_key, algorithm=ALGORITHM)


def decode_access_token(token: str, *, secret_key: str) -> AccessClaims:
    """Verify signature, algorithm, expiry and kind; anything else is an InvalidTokenError."""
    claims, expires_at = _verified_claims(token, secret_key)
    # The cache below remembers a token's signature check, not its expiry: check that now.
    if expires_at <= time.time():
        raise InvalidTokenError
    return claims


# A client sends the same access token with every request until it expires, and checking
# its signature is a pure function of (token, key): remembering the answer is always right.
# Whether the account may still use it (revocation, deactivation) is checked against the
# account on every request: read from the database, or from Redis where every write that
# revokes moves the account's cache tag first (core/cache.py). Only valid tokens are
# remembered here, so junk cannot flush it.
VERIFIED_TOKEN_CACHE_SIZE = 4096


@lru_cache(maxsize=VERIFIED_TOKEN_CACHE_SIZE)
def _verified_claims(token: str, secret_key: str) -> tuple[AccessClaims, float]:
    try:
        claims = jwt.decode(
            token,
            secret_key,
            algorithms=[ALGORITHM],
            options={"require_exp": True, "require_sub": True, "require_iat": True},
        )
    except (JWTError, ValueError, TypeError, UnicodeError) as error:
        raise InvalidTokenError from error
    subject, version, jti, session_id, expires_at = (
        claims.get("sub"),
        claims.get("ver"),
        claims.get("jti"),
        claims.get("sid"),
        claims.get("exp"),
    )
    if (
        claims.get("type") != ACCESS_TOKEN_TYPE
        or not isinstance(subject, str)
        or type(version) is not int
        or not isinstance(jti, str)
        or not isinstance(session_id, str)
        or not isinstance(expires_at, int | float)
    ):
        raise InvalidTokenError
    verified = AccessClaims(subject=subject, token_version=version, jti=jti, session_id=session_id)
    return verified, float(expires_at)


def new_opaque_token() -> str:
    """A random bearer secret (refresh tokens, one-time links): 256 bits."""
    return secrets.token_urlsafe(32)


def digest_token(token: str) -> str:
    """What the database stores instead of a bearer secret: a leak of the table is no login."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
