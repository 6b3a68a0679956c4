"""API keys: issue, list and revoke them, and check one presented as a Bearer credential.

A key's permissions are a subset of its owner's when it is made, and are checked again at
every use against what the owner holds then: a demoted, deactivated or deleted owner's keys
shrink or stop at once. What a key presents is checked against a keyed hash in constant
time; a malformed, unknown or wrong key gets the same 401 as a forged access token, after
the same database read, so timing tells nobody which keys exist.
"""

import hashlib
import hmac
import secrets
import uuid
import zlib
from datetime import timedelta

from sqlmodel import Session, SQLModel, col, select, update

from core.cache import Cache
from core.config import Settings
from core.data import audit
from core.data.clock import utc_now
from core.data.db import Database, read_only, transaction
from core.data.invalidation import revoke_on_commit
from core.data.types import UTCDateTime
from core.http.ratelimit import parse_limit
from features.api_keys.errors import ApiKeyNotFound
from features.api_keys.models import (
    PUBLIC_ID_LENGTH,
    ApiKey,
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyPublic,
)
from features.api_keys.permissions import MANAGE
from features.users import authority as users_authority
from features.users import service as users_service
from features.users.errors import InvalidAccessToken
from features.users.models import AuthenticatedUser

KEY_PREFIX = "fak_"
SECRET_LENGTH = 32
CHECKSUM_LENGTH = 6
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# last_used_at moves at most this often per key, whatever the traffic.
LAST_USED_RESOLUTION = timedelta(minutes=1)
# Which account each key belongs to, per process: it never changes, so the cache entry's tags
# (the key's, the owner's) are known before it is read, in one round trip.
OWNERS_REMEMBERED = 10_000

# The audit events this feature records (core/data/audit.py); the subject is the key's owner.
# A key appears by its id, name and public prefix, never by its secret or the secret's hash.
KEY_CREATED = audit.event_type(
    "api_keys.created", "An API key was made (its permissions in details)"
)
KEY_REVOKED = audit.event_type(
    "api_keys.revoked", "An API key was revoked, by its owner or a manager"
)


# --- the key's text -----------------------------------------------------------------------


def _base62(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, digit = divmod(number, 62)
        digits.append(ALPHABET[digit])
    return "".join(reversed(digits))


def checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode()), CHECKSUM_LENGTH)


def _random(length: int) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def new_key() -> tuple[str, str, str]:
    """(the key, its public id, its secret)."""
    public_id, secret = _random(PUBLIC_ID_LENGTH), _random(SECRET_LENGTH)
    body = f"{KEY_PREFIX}{public_id}_{secret}"
    return body + checksum(body), public_id, secret


def parse_key(key: str) -> tuple[str, str] | None:
    """(public id, secret) of a well-formed key whose checksum holds; None for anything else."""
    expected = len(KEY_PREFIX) + PUBLIC_ID_LENGTH + 1 + SECRET_LENGTH + CHECKSUM_LENGTH
    if len(key) != expected or not key.startswith(KEY_PREFIX):
        return None
    body, given = key[:-CHECKSUM_LENGTH], key[-CHECKSUM_LENGTH:]
    public_id, separator, secret = body[len(KEY_PREFIX) :].partition("_")
    if (
        separator != "_"
        or len(public_id) != PUBLIC_ID_LENGTH
        or not all(char in ALPHABET for char in public_id + secret)
        or not hmac.compare_digest(checksum(body), given)
    ):
        return None
    return public_id, secret


def secret_hash(settings: Settings, secret: str) -> str:
    """What the table keeps: HMAC-SHA256 of the secret under a key of its own, derived from
    SECRET_KEY (rotating SECRET_KEY therefore ends every API key, as it ends access tokens)."""
    key = hmac.new(settings.SECRET_KEY.encode(), b"api-keys", hashlib.sha256).digest()
    return hmac.new(key, secret.encode(), hashlib.sha256).hexdigest()


def key_tag(public_id: str) -> str:
    return f"api_key:{public_id}"


def _public(key: ApiKey) -> ApiKeyPublic:
    return ApiKeyPublic(
        id=key.id,
        user_id=key.user_id,
        name=key.name,
        prefix=f"{KEY_PREFIX}{key.public_id}",
        permissions=sorted(key.permissions),
        created_at=key.created_at,
        expires_at=key.expires_at,
        last_used_at=key.last_used_at,
    )


def _described(key: ApiKey) -> dict[str, str]:
    """A key as the audit log names it: what its owner sees in the list, no secret."""
    return {"key_id": str(key.id), "name": key.name, "prefix": f"{KEY_PREFIX}{key.public_id}"}


# --- issuing, listing, revoking -------------------------------------------------------------


@transaction
def create_key(
    session: Session, *, owner: AuthenticatedUser, data: ApiKeyCreate, settings: Settings
) -> ApiKeyCreated:
    """A key for `owner`, with permissions it holds (403 for one it does not)."""
    users_authority.ensure_covers(owner, data.permissions)
    # Held until the commit, so the owner cannot be deleted before the key is stored; deleted
    # a moment ago, the token this request came with died with the account.
    if users_service.find(session, owner.id, lock="reference") is None:
        raise InvalidAccessToken
    key, public_id, secret = new_key()
    stored = ApiKey(
        user_id=owner.id,
        name=data.name,
        public_id=public_id,
        secret_hash=secret_hash(settings, secret),
        permissions=sorted(set(data.permissions)),
        expires_at=data.expires_at,
    )
    session.add(stored)
    shown = ApiKeyCreated(**_public(stored).model_dump(), key=key)
    audit.record(
        session,
        KEY_CREATED,
        actor_id=owner.id,
        subject_id=owner.id,
        details={**_described(stored), "permissions": stored.permissions},
    )
    session.commit()
    return shown


@read_only
def list_keys(session: Session, *, owner_id: uuid.UUID) -> list[ApiKeyPublic]:
    keys = session.exec(
        select(ApiKey).where(col(ApiKey.user_id) == owner_id).order_by(col(ApiKey.created_at))
    )
    return [_public(key) for key in keys]


@transaction
def revoke_key(session: Session, *, actor: AuthenticatedUser, key_id: uuid.UUID) -> None:
    """The key stops working on every instance once this commits. Another account's key is a
    404 unless the actor may manage every key."""
    key = session.get(ApiKey, key_id)
    if key is None or (key.user_id != actor.id and MANAGE not in actor.permissions):
        raise ApiKeyNotFound
    session.delete(key)
    revoke_on_commit(session, key_tag(key.public_id))
    audit.record(
        session, KEY_REVOKED, actor_id=actor.id, subject_id=key.user_id, details=_described(key)
    )
    session.commit()


# --- a key presented as a credential ----------------------------------------------------------


class KeyHolder(SQLModel):
    """What a presented key is checked against, cached like an account (tags: the key's, its
    owner's, every role's), so a hit costs no database read."""

    key_id: uuid.UUID
    secret_hash: str
    expires_at: UTCDateTime | None
    last_used_at: UTCDateTime | None
    account: AuthenticatedUser


@transaction  # the primary: a key revoked a moment ago must be refused
def _owner(session: Session, *, public_id: str) -> uuid.UUID | None:
    return session.exec(select(ApiKey.user_id).where(ApiKey.public_id == public_id)).first()


@transaction
def _load_holder(session: Session, *, public_id: str) -> KeyHolder | None:
    key = session.exec(select(ApiKey).where(ApiKey.public_id == public_id)).first()
    if key is None:
        return None
    account = users_authority.load_account(session, key.user_id)
    if account is None:
        return None
    # Never more than the owner holds now; the owner's account tag and the roles tag end this
    # entry when that changes.
    granted = sorted(set(key.permissions) & set(account.permissions))
    return KeyHolder(
        key_id=key.id,
        secret_hash=key.secret_hash,
        expires_at=key.expires_at,
        last_used_at=key.last_used_at,
        account=account.model_copy(update={"permissions": granted, "credential": "api_key"}),
    )


@transaction
def _mark_used(session: Session, *, key_id: uuid.UUID) -> None:
    now = utc_now()
    session.execute(
        update(ApiKey)
        .where(
            col(ApiKey.id) == key_id,
            col(ApiKey.last_used_at).is_(None)
            | (col(ApiKey.last_used_at) < now - LAST_USED_RESOLUTION),
        )
        .values(last_used_at=now)
    )
    session.commit()


_owners: dict[str, uuid.UUID] = {}


async def _owner_of(db: Database, public_id: str) -> uuid.UUID | None:
    owner = _owners.get(public_id)
    if owner is None:
        owner = await _owner(db, public_id=public_id)
        if owner is not None:
            if len(_owners) >= OWNERS_REMEMBERED:
                _owners.clear()
            _owners[public_id] = owner
    return owner


async def authenticate(key: str, context: users_authority.CredentialContext) -> AuthenticatedUser:
    """The account a presented key speaks for, with the key's permissions; the same 401 as a
    forged access token for anything that is not a live key."""
    parsed = parse_key(key)
    if parsed is None:
        raise InvalidAccessToken
    public_id, secret = parsed
    owner = await _owner_of(context.db, public_id)
    if owner is None:
        # What a live key's wrong secret costs beyond this database read: a cache read and
        # the hash of the secret.
        await context.cache.get(f"api_key:{public_id}", (key_tag(public_id),))
        secret_hash(context.settings, secret)
        raise InvalidAccessToken
    holder = await context.cache.fetch(
        f"api_key:{public_id}",
        tags=(key_tag(public_id), users_authority.account_tag(owner), users_authority.ROLES_TAG),
        schema=KeyHolder,
        load=lambda: _load_holder(context.db, public_id=public_id),
        revocable=True,
    )
    if holder is None or not hmac.compare_digest(
        holder.secret_hash, secret_hash(context.settings, secret)
    ):
        if holder is not None:
            await _owner(context.db, public_id=public_id)  # what an unknown key costs, too
        raise InvalidAccessToken
    if not holder.account.is_active or (
        holder.expires_at is not None and holder.expires_at <= utc_now()
    ):
        raise InvalidAccessToken
    limit = parse_limit(context.settings.API_KEY_RATE_LIMIT)
    if limit is not None:
        await context.limiter.hit_leased(limit, "api-key", public_id)
    await _note_use(context.db, context.cache, holder, public_id)
    return holder.account


async def _note_use(db: Database, cache: Cache, holder: KeyHolder, public_id: str) -> None:
    """last_used_at, written at most once a minute per key across every instance."""
    if holder.last_used_at is not None and holder.last_used_at > utc_now() - LAST_USED_RESOLUTION:
        return
    if await cache.claim(f"api-key-used:{public_id}", LAST_USED_RESOLUTION.total_seconds()):
        await _mark_used(db, key_id=holder.key_id)
