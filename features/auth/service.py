"""Auth use cases: register, sign in with a password, refresh, sign out. Sessions and their
refresh tokens are the account's (features/users/sessions.py); this feature decides who may
begin one with a password.

Routes call the `@transaction` functions as `await service.fn(db, ...)` (see core/data/db.py) and
the async ones, which meter the request and run bcrypt on the hasher's threads around their
units of work, so no request holds a connection while a password is checked.
"""

from sqlalchemy import update
from sqlmodel import Session, col

from core.config import Settings
from core.data.db import Database, transaction
from core.errors import TooManyRequestsError
from core.http.oauth2 import TokenPair
from core.http.ratelimit import RateLimiter, address_key, once_per_window, parse_limit
from core.observability import metrics
from core.security import (
    PASSWORD_MAX_BYTES,
    PasswordHasher,
)
from features.auth.errors import InvalidCredentials
from features.users import authority as users_authority
from features.users import service as users_service
from features.users import sessions as users_sessions
from features.users.models import User, UserCreate, UserPublic, UserRegister, normalize_email


@transaction  # the primary: an account deactivated a moment ago must already be refused
def _find_account(session: Session, *, email: str) -> User | None:
    return users_service.get_by_email(session, email)


@transaction
def _start_session(
    session: Session,
    *,
    user: User,
    settings: Settings,
    origin: users_sessions.Origin,
    rehashed: str | None = None,
) -> TokenPair:
    if rehashed is not None:
        # Only over the hash that was checked: a password changed meanwhile stays changed.
        session.execute(
            update(User)
            .where(col(User.id) == user.id, col(User.hashed_password) == user.hashed_password)
            .values(hashed_password=rehashed)
        )
    return users_sessions.start(session, user, settings, origin)


@transaction
def _create_account(session: Session, *, data: UserRegister, hashed_password: str) -> UserPublic:
    account = UserCreate(name=data.name, email=data.email, password=data.password)
    user = users_service.add(session, account, hashed_password)
    users_service.new_address.fire(session, user)
    shown = users_authority.public(session, user)
    session.commit()
    return shown


# --- use cases that check or hash a password ------------------------------------------------


async def register(
    db: Database,
    passwords: PasswordHasher,
    limiter: RateLimiter,
    settings: Settings,
    *,
    data: UserRegister,
    client_ip: str,
) -> UserPublic:
    limit = parse_limit(settings.REGISTER_RATE_LIMIT)
    if limit is not None:
        await limiter.hit(limit, "register", address_key(client_ip))
    hashed = await passwords.hash_async(data.password)
    return await _create_account(db, data=data, hashed_password=hashed)


@metrics.counts_login_outcomes
async def login(
    db: Database,
    passwords: PasswordHasher,
    limiter: RateLimiter,
    settings: Settings,
    *,
    email: str,
    password: str,
    client_ip: str,
    user_agent: str | None = None,
) -> TokenPair:
    """One bcrypt verify per attempt, whether or not the account exists."""
    email = normalize_email(email)
    throttle = _LoginThrottle(limiter, settings, account=email, client_ip=client_ip)
    await throttle.admit()
    if "\x00" in email or len(password.encode("utf-8")) > PASSWORD_MAX_BYTES:
        # No account can have either (a NUL would also crash the PostgreSQL driver), so it
        # cannot match: answer without the database and without bcrypt.
        await throttle.failed()
        raise InvalidCredentials
    user = await _find_account(db, email=email)
    matches = await passwords.verify_async(password, user.hashed_password if user else None)
    if (
        user is None
        or not matches
        or not user.is_active
        or (settings.REQUIRE_VERIFIED_EMAIL and not user.is_verified)
    ):
        await throttle.failed()
        raise InvalidCredentials
    # A hash made at another cost than BCRYPT_ROUNDS follows the setting now, while the
    # password is at hand, in the same unit of work as the sign-in.
    rehashed = (
        await passwords.hash_async(password)
        if passwords.needs_rehash(user.hashed_password)
        else None
    )
    origin = users_sessions.Origin(user_agent, client_ip)
    return await _start_session(db, user=user, settings=settings, origin=origin, rehashed=rehashed)


class _LoginThrottle:
    """Limits that stop guessers, not owners.

    - LOGIN_RATE_LIMIT (10/minute): attempts from one client address, and attempts at one
      account from one address: a guesser at one address is slowed at once.
    - LOGIN_ACCOUNT_FAILURE_LIMIT (20/hour): failed sign-ins at one account from every
      address. Past it, an address that has already failed at that account within the window
      is refused; an address that has not is still heard, so the owner with the right
      password signs in however many addresses fail meanwhile. A guesser spread over many
      addresses thus gets the ceiling, then one guess per address (per IPv6 /64) per window,
      instead of the per-address limit at every address.
    """

    def __init__(
        self, limiter: RateLimiter, settings: Settings, *, account: str, client_ip: str
    ) -> None:
        self._limiter = limiter
        self._attempts = parse_limit(settings.LOGIN_RATE_LIMIT)
        self._failures = parse_limit(settings.LOGIN_ACCOUNT_FAILURE_LIMIT)
        self._address = address_key(client_ip)
        self._account = f"account:{account}"
        self._account_from_address = f"{self._account}|{self._address}"

    async def admit(self) -> None:
        """429 for an attempt the limits do not allow, before anything is checked."""
        if self._attempts is not None:
            await self._limiter.hit(
                self._attempts, "login", self._address, self._account_from_address
            )
        if self._failures is None:
            return
        if not await self._limiter.wait_seconds(self._failures, "login-failures", self._account):
            return
        wait = await self._limiter.wait_seconds(
            once_per_window(self._failures), "login-failures", self._account_from_address
        )
        if wait:
            metrics.record_rate_limit_rejection("login")
            raise TooManyRequestsError(retry_after_seconds=wait)

    async def failed(self) -> None:
        """Count a failed attempt at the account, and that this address has failed at it."""
        if self._failures is None:
            return
        await self._limiter.record(self._failures, "login-failures", self._account)
        await self._limiter.record(
            once_per_window(self._failures), "login-failures", self._account_from_address
        )
