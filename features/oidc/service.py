"""Signing in and linking accounts through OpenID Connect providers.

The flow, for a frontend with no secret (a single-page or mobile app):

1. `begin`: a sign-in attempt is stored (the digest of its `state`, its nonce, its PKCE
   verifier, the frontend's redirect URI, the digest of a random value the browser keeps in
   a cookie) and the browser is sent to the provider (core/oidc.py builds the URL).
2. `finish`, at the callback: the attempt is found by its `state`, must have been begun by
   this browser (the cookie), and is spent, once. The code is exchanged and the ID token
   verified (core/oidc.py); then the identity signs its account in, or is linked, or makes a
   new account, by the rules of `_resolve`. The browser goes back to the frontend with a
   one-time code (`code`), `linked=<provider>`, or `error=<code>`: never a token in a URL.
3. `exchange`: the frontend trades the one-time code, once, within a minute, with the PKCE
   verifier of the challenge it gave at step 1, for the usual token pair: a session like any
   other. The verifier binds the code to the frontend that began the sign-in.

Linking and account creation follow the email only when both sides vouch for it: the
provider asserts `email_verified` and the existing account's address is verified. An
unverified address never links and never creates an account.
"""

import base64
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlencode, urlsplit, urlunsplit

from pydantic import EmailStr, TypeAdapter, ValidationError
from sqlalchemy import delete, func, update
from sqlmodel import Session, col, select

from core.config import Settings
from core.data import audit
from core.data.clock import as_utc, utc_now
from core.data.db import Database, changed_rows, locking, read_only, serialized, transaction
from core.http.oauth2 import TokenPair
from core.http.ratelimit import RateLimiter, address_key, parse_limit
from core.oidc import OidcProviders, ProviderRefused, ProviderUnavailable, VerifiedIdentity
from core.security import PasswordHasher, digest_token, new_opaque_token
from features.oidc.errors import (
    CallbackUrlTooLong,
    CodeVerifierMismatch,
    CurrentPasswordRequired,
    IdentityNotFound,
    IdentityTaken,
    InvalidExchangeCode,
    InvalidSignInState,
    LastSignInMethod,
    RecentSignInRequired,
    RedirectUriNotAllowed,
    UnknownProvider,
)
from features.oidc.models import (
    REDIRECT_URI_MAX_LENGTH,
    ExchangeCode,
    Identity,
    IdentityPublic,
    LoginAttempt,
    OidcProviderPublic,
)
from features.users import authority
from features.users import service as users_service
from features.users import sessions as users_sessions
from features.users.errors import EmailTaken, UnknownRole
from features.users.models import (
    EMAIL_MAX_LENGTH,
    MEMBER_ROLE,
    NAME_MAX_LENGTH,
    AccountSession,
    AuthenticatedUser,
    User,
    normalize_email,
)

ATTEMPT_LIFETIME = timedelta(minutes=10)
# How fresh the sign-in of an account without a password must be to begin a link.
RECENT_SIGN_IN = timedelta(minutes=10)
EXCHANGE_CODE_LIFETIME = timedelta(seconds=60)
# PKCE's verifier: 43 to 128 characters (RFC 7636, 4.1); 64 random base64url ones.
CODE_VERIFIER_BYTES = 48

# The audit events this feature records (core/data/audit.py). Details name the provider and
# never a token, a code, a state or a nonce.
SIGNED_IN = audit.event_type(
    "oidc.signed_in", "A sign-in through an OpenID Connect provider succeeded"
)
IDENTITY_LINKED = audit.event_type(
    "oidc.identity_linked", "A provider account was linked to an account (how: in details)"
)
IDENTITY_UNLINKED = audit.event_type(
    "oidc.identity_unlinked", "A provider account was unlinked by the account's owner"
)
SIGN_IN_REFUSED = audit.event_type(
    "oidc.sign_in_refused", "A sign-in or link through a provider was refused (reason in details)"
)

_EMAIL = TypeAdapter(EmailStr)


def providers(oidc: OidcProviders) -> list[OidcProviderPublic]:
    return [OidcProviderPublic(name=name) for name in oidc.names()]


# --- 1. begin: the authorize step ------------------------------------------------------------


@transaction
def _store_attempt(session: Session, *, attempt: LoginAttempt) -> None:
    session.add(attempt)
    session.commit()


async def _limit_attempts(limiter: RateLimiter, settings: Settings, client_ip: str) -> None:
    """429 past OIDC_AUTHORIZE_RATE_LIMIT attempts begun per address: each stores a row, and
    a link checks a password."""
    limit = parse_limit(settings.OIDC_AUTHORIZE_RATE_LIMIT)
    if limit is not None:
        await limiter.hit(limit, "oidc-authorize", address_key(client_ip))


async def begin(
    db: Database,
    oidc: OidcProviders,
    settings: Settings,
    limiter: RateLimiter,
    *,
    client_ip: str,
    provider: str,
    redirect_uri: str,
    callback_uri: str,
    browser: str,
    code_challenge: str,
) -> str:
    """The authorize step: `_begin` a sign-in, within the address's rate limit."""
    await _limit_attempts(limiter, settings, client_ip)
    return await _begin(
        db,
        oidc,
        settings,
        provider=provider,
        redirect_uri=redirect_uri,
        callback_uri=callback_uri,
        browser=browser,
        code_challenge=code_challenge,
    )


async def _begin(
    db: Database,
    oidc: OidcProviders,
    settings: Settings,
    *,
    provider: str,
    redirect_uri: str,
    callback_uri: str,
    browser: str,
    code_challenge: str | None,
    linking: AuthenticatedUser | None = None,
) -> str:
    """Store a sign-in attempt bound to `browser` (the cookie's value) and to the frontend's
    PKCE `code_challenge`, and answer the URL to send the browser to. `linking`: the
    signed-in account linking the provider, through its session (no code, so no challenge)."""
    _check_destination(oidc, settings, provider, redirect_uri, callback_uri)
    state, nonce = new_opaque_token(), new_opaque_token()
    code_verifier = secrets.token_urlsafe(CODE_VERIFIER_BYTES)
    # First: a provider that cannot be reached is a 503 with nothing stored.
    url = await oidc.authorization_url(
        provider, redirect_uri=callback_uri, state=state, nonce=nonce, code_verifier=code_verifier
    )
    attempt = LoginAttempt(
        state_hash=digest_token(state),
        browser_hash=digest_token(browser),
        provider=provider,
        redirect_uri=redirect_uri,
        callback_uri=callback_uri,
        nonce=nonce,
        code_verifier=code_verifier,
        code_challenge=code_challenge,
        linking_user_id=None if linking is None else linking.id,
        linking_session_id=None if linking is None else linking.session_id,
        linking_token_version=None if linking is None else linking.token_version,
        expires_at=utc_now() + ATTEMPT_LIFETIME,
    )
    await _store_attempt(db, attempt=attempt)
    return url


def _check_destination(
    oidc: OidcProviders, settings: Settings, provider: str, redirect_uri: str, callback_uri: str
) -> None:
    if provider not in oidc:
        raise UnknownProvider
    if redirect_uri not in settings.OIDC_REDIRECT_URIS:
        raise RedirectUriNotAllowed
    if len(callback_uri) > REDIRECT_URI_MAX_LENGTH:
        # Built from the request's Host header: no provider has such a URL registered.
        raise CallbackUrlTooLong


@transaction
def _link_standing(
    session: Session, *, user_id: uuid.UUID, session_id: uuid.UUID
) -> tuple[bool, datetime | None]:
    """Whether the account has a password, and when the session signed in (None: ended)."""
    user = session.get(User, user_id)
    signed_in = session.get(AccountSession, session_id)
    live = signed_in is not None and signed_in.user_id == user_id and signed_in.ended_at is None
    return (
        user is not None and user.hashed_password is not None,
        as_utc(signed_in.created_at) if live and signed_in is not None else None,
    )


async def begin_link(
    db: Database,
    oidc: OidcProviders,
    settings: Settings,
    passwords: PasswordHasher,
    limiter: RateLimiter,
    *,
    client_ip: str,
    user: AuthenticatedUser,
    current_password: str | None,
    provider: str,
    redirect_uri: str,
    callback_uri: str,
    browser: str,
) -> str:
    """`begin`, for a signed-in account linking a provider, once its owner proved it is
    them: the current password, or (an account without one) a sign-in in the last
    RECENT_SIGN_IN. A stolen access token alone links nothing."""
    await _limit_attempts(limiter, settings, client_ip)
    _check_destination(oidc, settings, provider, redirect_uri, callback_uri)
    assert user.session_id is not None  # SignedIn: a session's access token
    has_password, signed_in_at = await _link_standing(
        db, user_id=user.id, session_id=user.session_id
    )
    if has_password:
        if current_password is None:
            raise CurrentPasswordRequired
        await users_service.check_current_password(db, passwords, user, current_password)
    elif signed_in_at is None or utc_now() - signed_in_at > RECENT_SIGN_IN:
        raise RecentSignInRequired
    return await _begin(
        db,
        oidc,
        settings,
        provider=provider,
        redirect_uri=redirect_uri,
        callback_uri=callback_uri,
        browser=browser,
        code_challenge=None,
        linking=user,
    )


# --- 2. finish: the callback -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Attempt:
    """A spent attempt, as the rest of the callback needs it."""

    provider: str
    redirect_uri: str
    callback_uri: str
    nonce: str
    code_verifier: str
    code_challenge: str | None
    linking_user_id: uuid.UUID | None
    linking_session_id: uuid.UUID | None
    linking_token_version: int | None


@transaction
def _take_attempt(
    session: Session, *, provider: str, state: str, browser: str | None, settings: Settings
) -> _Attempt | str:
    """Spend the attempt `state` names; the attempt, or the frontend URL to send a browser
    that did not begin it back to. An unknown, spent or expired state, or one whose
    redirect URI is no longer registered, is InvalidSignInState: nowhere trusted to go."""
    attempt = session.exec(
        select(LoginAttempt).where(LoginAttempt.state_hash == digest_token(state))
    ).first()
    if (
        attempt is None
        or attempt.provider != provider
        or as_utc(attempt.expires_at) <= utc_now()
        or attempt.redirect_uri not in settings.OIDC_REDIRECT_URIS
    ):
        raise InvalidSignInState
    if browser is None or not hmac.compare_digest(attempt.browser_hash, digest_token(browser)):
        # Another browser's state (a forged link, a login-CSRF attempt): refused, and the
        # attempt stays for the browser that began it.
        return _with_params(attempt.redirect_uri, error="invalid_state")
    taken = _Attempt(
        provider=attempt.provider,
        redirect_uri=attempt.redirect_uri,
        callback_uri=attempt.callback_uri,
        nonce=attempt.nonce,
        code_verifier=attempt.code_verifier,
        code_challenge=attempt.code_challenge,
        linking_user_id=attempt.linking_user_id,
        linking_session_id=attempt.linking_session_id,
        linking_token_version=attempt.linking_token_version,
    )
    # Spent atomically: of two callbacks racing with one state, one goes on.
    if changed_rows(session, delete(LoginAttempt).where(col(LoginAttempt.id) == attempt.id)) != 1:
        raise InvalidSignInState
    session.commit()
    return taken


def _with_params(uri: str, **params: str) -> str:
    """`uri` with `params` added to its query (a registered URI may carry one already)."""
    parts = urlsplit(uri)
    query = "&".join(part for part in (parts.query, urlencode(params)) if part)
    return urlunsplit(parts._replace(query=query))


async def finish(
    db: Database,
    oidc: OidcProviders,
    settings: Settings,
    *,
    provider: str,
    state: str,
    browser: str | None,
    code: str | None,
    error: str | None,
) -> str:
    """The callback: where to send the browser now, on the frontend's redirect URI."""
    if provider not in oidc:
        raise UnknownProvider
    taken = await _take_attempt(
        db, provider=provider, state=state, browser=browser, settings=settings
    )
    if isinstance(taken, str):
        return taken
    if error is not None or code is None:
        # The person cancelled at the provider, or it refused: nothing else is known.
        reported = "access_denied" if error == "access_denied" else "provider_error"
        return _with_params(taken.redirect_uri, error=reported)
    try:
        identity = await oidc.verified_identity(
            provider,
            code=code,
            redirect_uri=taken.callback_uri,
            code_verifier=taken.code_verifier,
            nonce=taken.nonce,
        )
    except ProviderRefused as refused:
        return _with_params(taken.redirect_uri, error=refused.code)
    except ProviderUnavailable:
        return _with_params(taken.redirect_uri, error="provider_unavailable")
    entry = next(entry for entry in settings.OIDC_PROVIDERS if entry.name == provider)
    try:
        outcome = await _resolve(
            db, attempt=taken, identity=identity, link_by_email=entry.link_by_email
        )
    except (EmailTaken, IdentityTaken):
        # Another callback made the account or linked this provider account a moment
        # before (two tabs, a double click): nothing was changed here, and signing in again
        # finds what the other one made. A browser is never shown a JSON 409.
        outcome = {"error": "try_again"}
    return _with_params(taken.redirect_uri, **outcome)


def _refused(
    session: Session, attempt: _Attempt, reason: str, subject_id: uuid.UUID | None
) -> dict[str, str]:
    """Record a refusal and answer what the frontend is told: `error=<reason>`. Commits."""
    audit.record(
        session,
        SIGN_IN_REFUSED,
        actor_id=attempt.linking_user_id,
        subject_id=subject_id,
        details={"provider": attempt.provider, "reason": reason},
    )
    session.commit()
    return {"error": reason}


def _link(
    session: Session, user: User, attempt: _Attempt, identity: VerifiedIdentity, how: str
) -> None:
    email = _usable_email(identity)
    linked = Identity(
        user_id=user.id, provider=attempt.provider, subject=identity.subject, email=email
    )
    session.add(linked)
    audit.record(
        session,
        IDENTITY_LINKED,
        actor_id=user.id,
        subject_id=user.id,
        details={"provider": attempt.provider, "identity_id": str(linked.id), "how": how},
    )


def _one_time_code(session: Session, user: User, attempt: _Attempt) -> dict[str, str]:
    """A code for the frontend to trade for tokens with the verifier of the attempt's
    challenge (an attempt the release before began has none: its code is refused). Commits."""
    code = new_opaque_token()
    session.add(
        ExchangeCode(
            code_hash=digest_token(code),
            user_id=user.id,
            provider=attempt.provider,
            code_challenge=attempt.code_challenge,
            expires_at=utc_now() + EXCHANGE_CODE_LIFETIME,
        )
    )
    session.commit()
    return {"code": code}


def _usable_email(identity: VerifiedIdentity) -> str | None:
    """The asserted address, lower-cased, if it is one an account could have."""
    if identity.email is None or len(identity.email) > EMAIL_MAX_LENGTH:
        return None
    try:
        return normalize_email(str(_EMAIL.validate_python(identity.email)))
    except ValidationError:
        return None


def _new_account_name(identity: VerifiedIdentity, email: str) -> str:
    name = " ".join((identity.name or "").split())[:NAME_MAX_LENGTH].strip()
    return name or email.split("@", 1)[0][:NAME_MAX_LENGTH]


def _holds_more_than_a_member(session: Session, user_id: uuid.UUID) -> bool:
    """Whether the account holds any permission the `member` role does not grant."""
    held = set(authority.authority_of(session, [user_id])[user_id].permissions)
    try:
        member = authority.granted_by(session, authority.roles_named(session, [MEMBER_ROLE]))
    except UnknownRole:  # the role was deleted: every permission is more than a member's
        member = set()
    return not held <= member


@transaction
def _resolve(
    session: Session, *, attempt: _Attempt, identity: VerifiedIdentity, link_by_email: bool
) -> dict[str, str]:
    """What a verified identity does: the query parameters the frontend gets."""
    # A locking read first: on SQLite the transaction then takes the write lock from its start
    # (core/data/db.py, `locking`), so its writes cannot fail on a snapshot another commit
    # made stale (a JSON 503 where the browser expects a redirect).
    known = session.exec(
        locking(
            session,
            select(Identity).where(
                Identity.provider == attempt.provider, Identity.subject == identity.subject
            ),
            "reference",
        )
    ).first()
    if attempt.linking_user_id is not None:
        return _resolve_link(session, attempt, identity, known)
    if known is not None:
        # Held until the commit, as every read of an account the unit of work stores a row
        # pointing at (here the one-time code).
        user = users_service.find(session, known.user_id, lock="reference")
        if user is None or not user.is_active:
            return _refused(session, attempt, "account_inactive", known.user_id)
        return _one_time_code(session, user, attempt)
    email = _usable_email(identity)
    if email is None:
        return _refused(session, attempt, "email_missing", None)
    if not identity.email_verified:
        # Never an account, never a link, on an address nobody has proven.
        return _refused(session, attempt, "email_not_verified", None)
    existing = users_service.get_by_email(session, email, lock="reference")
    if existing is not None:
        if not existing.is_verified:
            # Whoever registered here never proved the address: linking would hand the
            # account to the provider's user, or this one to a squatter. The owner signs in
            # and links the provider from their account instead.
            return _refused(session, attempt, "account_exists_unverified", existing.id)
        if not existing.is_active:
            return _refused(session, attempt, "account_inactive", existing.id)
        if not link_by_email:
            # This provider's addresses are not trusted to link (OIDC_PROVIDERS): the owner
            # signs in and links it from the account.
            return _refused(session, attempt, "account_exists", existing.id)
        if _holds_more_than_a_member(session, existing.id):
            # An admin or support account is worth more than whatever the provider's
            # address check is worth: its owner links the provider from the account.
            return _refused(session, attempt, "account_privileged", existing.id)
        _link(session, existing, attempt, identity, how="verified_email")
        return _one_time_code(session, existing, attempt)
    user = users_service.add_without_password(
        session, name=_new_account_name(identity, email), email=email
    )
    users_service.record_created(session, user, actor_id=user.id)  # a sign-up: by itself
    _link(session, user, attempt, identity, how="new_account")
    return _one_time_code(session, user, attempt)


def _resolve_link(
    session: Session, attempt: _Attempt, identity: VerifiedIdentity, known: Identity | None
) -> dict[str, str]:
    """A signed-in account asked to link the provider: it proved both ends itself."""
    assert attempt.linking_user_id is not None
    user = users_service.find(session, attempt.linking_user_id, lock="reference")
    if user is None or not user.is_active:
        return _refused(session, attempt, "account_inactive", attempt.linking_user_id)
    if (
        attempt.linking_session_id is None
        or attempt.linking_token_version != user.token_version
        or not users_sessions.is_live(session, user.id, attempt.linking_session_id)
    ):
        # The session that asked has ended, or the password changed since (every token
        # issued before is dead): whoever began the link may not be the owner any more.
        return _refused(session, attempt, "session_ended", user.id)
    if known is not None:
        if known.user_id != user.id:
            return _refused(session, attempt, "identity_in_use", user.id)
        return {"linked": attempt.provider}  # linked already: nothing to do
    _link(session, user, attempt, identity, how="from_account")
    session.commit()
    return {"linked": attempt.provider}


# --- 3. exchange: the one-time code for tokens -------------------------------------------------


def s256_challenge(code_verifier: str) -> str:
    """PKCE's S256 transform (RFC 7636, 4.2): base64url(SHA-256(verifier)), unpadded."""
    digest = hashlib.sha256(code_verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@transaction
def _sign_in(
    session: Session, *, code: str, code_verifier: str | None, settings: Settings
) -> TokenPair:
    now = utc_now()
    code_hash = digest_token(code)
    # The account first, held until the commit (users/service.py, `find`): it cannot be
    # deleted before the session that points at it is stored, and one deleted a moment ago
    # is not signed in. Locked before the code's row, as a deletion locks them, so the two
    # never wait on each other.
    # One locking statement, the transaction's first: on SQLite it then takes the write lock
    # from the start (core/data/db.py, `locking`).
    owner = select(ExchangeCode.user_id).where(ExchangeCode.code_hash == code_hash)
    user = session.exec(
        locking(session, select(User).where(col(User.id) == owner.scalar_subquery()), "reference")
    ).first()
    if user is None:
        raise InvalidExchangeCode
    # Spent atomically, and only within its minute: of two requests racing with one code,
    # one signs in.
    spend = (
        update(ExchangeCode)
        .where(
            col(ExchangeCode.code_hash) == code_hash,
            col(ExchangeCode.used_at).is_(None),
            col(ExchangeCode.expires_at) > now,
        )
        .values(used_at=now)
    )
    if changed_rows(session, spend) != 1:
        raise InvalidExchangeCode
    spent = session.exec(select(ExchangeCode).where(ExchangeCode.code_hash == code_hash)).one()
    if (
        spent.code_challenge is None
        or code_verifier is None
        or not hmac.compare_digest(spent.code_challenge, s256_challenge(code_verifier))
    ):
        # Another client's code (the attacker's, traded in the victim's app: login CSRF; or
        # one an app caught from another's redirect). Spent all the same: no second guess.
        audit.record(
            session,
            SIGN_IN_REFUSED,
            actor_id=None,
            subject_id=spent.user_id,
            details={"provider": spent.provider, "reason": "code_verifier_mismatch"},
        )
        session.commit()
        raise CodeVerifierMismatch
    if not user.is_active:
        raise InvalidExchangeCode
    signed_in, pair = users_sessions.start(session, user, settings)
    audit.record(
        session,
        SIGNED_IN,
        actor_id=user.id,
        subject_id=user.id,
        details={"provider": spent.provider, "session_id": str(signed_in.id)},
    )
    session.commit()
    return pair


async def exchange(
    db: Database,
    limiter: RateLimiter,
    settings: Settings,
    *,
    code: str,
    code_verifier: str | None,
    client_ip: str,
) -> TokenPair:
    """A token pair for a one-time code and the verifier of its attempt's PKCE challenge;
    429 past OIDC_EXCHANGE_RATE_LIMIT per address."""
    limit = parse_limit(settings.OIDC_EXCHANGE_RATE_LIMIT)
    if limit is not None:
        await limiter.hit(limit, "oidc-exchange", address_key(client_ip))
    return await _sign_in(db, code=code, code_verifier=code_verifier, settings=settings)


# --- the account's identities ------------------------------------------------------------------


@read_only
def list_identities(session: Session, *, user_id: uuid.UUID) -> list[IdentityPublic]:
    found = session.exec(
        select(Identity).where(Identity.user_id == user_id).order_by(col(Identity.created_at))
    )
    return [IdentityPublic.model_validate(identity, from_attributes=True) for identity in found]


@transaction
def unlink(session: Session, *, user_id: uuid.UUID, identity_id: uuid.UUID) -> None:
    """Unlink one of the account's identities, unless it is the last way to sign in (no
    password, no other identity): 409. Another account's is a 404."""
    # One unlink per account at a time: two racing to remove its last two identities would
    # each see the other one still there.
    serialized(session, f"identities:{user_id}")
    identity = session.get(Identity, identity_id)
    if identity is None or identity.user_id != user_id:
        raise IdentityNotFound
    user = users_service.get(session, user_id)
    others = session.exec(
        select(func.count())
        .select_from(Identity)
        .where(Identity.user_id == user_id, Identity.id != identity_id)
    ).one()
    if user.hashed_password is None and others == 0:
        raise LastSignInMethod
    session.delete(identity)
    audit.record(
        session,
        IDENTITY_UNLINKED,
        actor_id=user_id,
        subject_id=user_id,
        details={"provider": identity.provider, "identity_id": str(identity.id)},
    )
    session.commit()


# --- housekeeping ------------------------------------------------------------------------------


def purge_expired(session: Session) -> int:
    """Delete the attempts and codes whose time is over; how many went. Commits."""
    now = utc_now()
    purged = changed_rows(
        session, delete(LoginAttempt).where(col(LoginAttempt.expires_at) <= now)
    ) + changed_rows(session, delete(ExchangeCode).where(col(ExchangeCode.expires_at) <= now))
    session.commit()
    return purged
