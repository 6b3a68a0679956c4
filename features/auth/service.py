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
from core.data import audit
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

# The audit events this feature records (core/data/audit.py): signing in with a password. The
# session's later life (refresh, sign-out, replays) is the users feature's
# (features/users/sessions.py).
SIGNED_IN = audit.event_type("auth.signed_in", "A sign-in with email and password succeeded")
SIGN_IN_FAILED = audit.event_type(
    "auth.sign_in_failed",
    "A sign-in failed; an address with no account is stored masked and as a keyed fingerprint",
)


@transaction  # the primary: an account deactivated a moment ago must already be refused
def _find_account(session: Session, *, email: str) -> User | None:
    return users_service.get_by_email(session, email)


@transaction
def _start_session(
    session: Session,
    *,
    user: User,
    settings: Settings,
    rehashed: str | None = None,
) -> TokenPair:
    # The password was checked against `user` as read a moment ago, outside this unit of work.
    # Held from here to the commit, the account cannot be deleted before its session is
    # stored; if it was deleted, deactivated or given a new password meanwhile, the sign-in
    # fails as the same attempt a moment later would have.
    current = users_service.find(session, user.id, lock="reference")
    if current is None or not current.is_active or current.hashed_password != user.hashed_password:
        raise InvalidCredentials
    if rehashed is not None:
        # Only over the hash that was checked: a password changed meanwhile stays changed.
        session.execute(
            update(User)
            .where(col(User.id) == user.id, col(User.hashed_password) == user.hashed_password)
            .values(hashed_password=rehashed)
        )
    signed_in, pair = users_sessions.start(session, user, settings)
    audit.record(
        session,
        SIGNED_IN,
        actor_id=user.id,
        subject_id=user.id,
        details={"session_id": str(signed_in.id)},
    )
    session.commit()
    return pair


@transaction
def _record_failed_sign_in(
    session: Session, *, user: User | None, email: str, reason: str, settings: Settings
) -> None:
    """A failed sign-in, in a transaction of its own (it changes nothing else). At an
    account: its id; at an address with no account: never the address itself, so the log is
    no list of addresses people tried."""
    if user is None:
        details = {"reason": reason, **audit.unknown_address(settings.SECRET_KEY, email)}
    else:
        details = {"reason": reason}
    audit.record(
        session,
        SIGN_IN_FAILED,
        actor_id=None,
        subject_id=None if user is None else user.id,
        details=details,
    )
    session.commit()


@transaction
def _create_account(session: Session, *, data: UserRegister, hashed_password: str) -> UserPublic:
    account = UserCreate(name=data.name, email=data.email, password=data.password)
    user = users_service.add(session, account, hashed_password)
    users_service.record_created(session, user, actor_id=user.id)  # a sign-up: by itself
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
) -> TokenPair:
    """One bcrypt verify per attempt, whether or not the account exists.

    Each failure checked against the database is in the audit log. Attempts the throttle
    refuses (429) and input no account can match are not: they are refused before the
    database on purpose, so a flood of them costs no write each (the throttle would turn
    into a way to fill the log), and the failures that tripped the throttle are there."""
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
    failure = _failure_reason(user, matches, settings)
    if failure is not None:
        await throttle.failed()
        # Every failure writes one row, known account or not: no difference in time either.
        await _record_failed_sign_in(db, user=user, email=email, reason=failure, settings=settings)
        raise InvalidCredentials
    # A missing account and one without a password are failures.
    assert user is not None
    assert user.hashed_password is not None
    # A hash made at another cost than BCRYPT_ROUNDS follows the setting now, while the
    # password is at hand, in the same unit of work as the sign-in.
    rehashed = (
        await passwords.hash_async(password)
        if passwords.needs_rehash(user.hashed_password)
        else None
    )
    return await _start_session(db, user=user, settings=settings, rehashed=rehashed)


def _failure_reason(user: User | None, matches: bool, settings: Settings) -> str | None:
    """Why a sign-in fails, for the audit log (the client gets one answer for all), or None."""
    if user is None:
        return "unknown_account"
    if user.hashed_password is None:
        # Signs in through a provider only (the verify above ran against the dummy hash, so
        # this costs what a wrong password costs).
        return "no_password"
    if not matches:
        return "wrong_password"
    if not user.is_active:
        return "inactive"
    if settings.REQUIRE_VERIFIED_EMAIL and not user.is_verified:
        return "unverified"
    return None


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
