"""Work that must happen only once a session's changes are committed: an invalidation, a job.

SQLAlchemy fires `after_commit` when a savepoint is released too, while the outer transaction
may still roll back; and a rollback of a savepoint undoes only what was done inside it. So each
action is tied to the transaction (or savepoint) it was asked in, dropped if that one rolls
back, and run when the outermost transaction commits.
"""

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import event
from sqlalchemy.orm import SessionTransaction
from sqlmodel import Session

_PENDING = "core.data.commits.pending"


@dataclass(frozen=True, slots=True)
class _Pending:
    action: Callable[[], None]
    transaction: SessionTransaction


def after_commit(session: Session, action: Callable[[], None]) -> None:
    """Run `action()` (in the committing thread, right after the commit) once the session's
    outermost transaction commits; never if the transaction, or the savepoint this call was
    made in, rolls back."""
    pending: list[_Pending] | None = session.info.get(_PENDING)
    if pending is None:
        pending = session.info[_PENDING] = []
        event.listen(session, "after_commit", _run_pending)
        event.listen(session, "after_soft_rollback", _drop_rolled_back)
    transaction = session.get_nested_transaction() or session.get_transaction()
    if transaction is None:  # nothing read or written yet: the session begins now
        transaction = session.begin()
    pending.append(_Pending(action, transaction))


def _run_pending(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint was released: its actions wait for the outer commit
    pending: list[_Pending] = session.info.get(_PENDING, [])
    ready, pending[:] = list(pending), []
    for item in ready:
        item.action()


def _drop_rolled_back(session: Session, previous_transaction: SessionTransaction) -> None:
    pending: list[_Pending] = session.info.get(_PENDING, [])

    def inside(transaction: SessionTransaction | None) -> bool:
        while transaction is not None:
            if transaction is previous_transaction:
                return True
            transaction = transaction.parent
        return False

    pending[:] = [item for item in pending if not inside(item.transaction)]
