"""What a transaction's commit owes the cache: the tags its writes touched, moved once it
commits and before its response is sent (core/data/db.py applies them after the unit of work).

A service marks them as it writes (`invalidate_on_commit`, `revoke_on_commit`); a rollback of
the transaction, or of the savepoint the mark was made in, forgets them (core/data/commits.py).
"""

from dataclasses import dataclass

from sqlmodel import Session

from core.cache import Cache
from core.data.commits import after_commit

_COMMITTED = "cache.committed"


@dataclass(frozen=True, slots=True)
class Invalidation:
    tags: frozenset[str]
    revoked: frozenset[str]


def invalidate_on_commit(session: Session, *tags: str) -> None:
    """Cached entries under these tags die once this session's transaction commits (and
    before the response is sent: core/data/db.py applies it after the unit of work). A rollback
    of the transaction, or of the savepoint, the call was made in forgets them."""
    _on_commit(session, tags, revoked=False)


def revoke_on_commit(session: Session, *tags: str) -> None:
    """Like `invalidate_on_commit`, for tags whose entries decide whether a token is still
    good: with Redis unreachable, the response waits until no worker can serve them."""
    _on_commit(session, tags, revoked=True)


def _on_commit(session: Session, tags: tuple[str, ...], *, revoked: bool) -> None:
    def committed() -> None:
        recorded: dict[str, bool] = session.info.setdefault(_COMMITTED, {})
        for tag in tags:
            recorded[tag] = recorded.get(tag, False) or revoked

    after_commit(session, committed)


def committed_invalidation(session: Session) -> Invalidation | None:
    """What the session's commits asked to invalidate, taken once."""
    committed: dict[str, bool] | None = session.info.pop(_COMMITTED, None)
    if not committed:
        return None
    return Invalidation(
        frozenset(committed), frozenset(tag for tag, revoked in committed.items() if revoked)
    )


async def apply_invalidation(cache: Cache, invalidation: Invalidation) -> None:
    """Invalidate what a unit of work committed; revoked tags wait out an outage."""
    if invalidation.revoked:
        await cache.revoke(invalidation.tags)
    else:
        await cache.invalidate(invalidation.tags)
