"""Reactions of one feature to another, inside the transaction that causes them.

A feature declares a hook where something happens that others may care about (users: an
account now has an address nobody has confirmed); features/registry.py (`connect_features`,
called by the app and the job worker) connects the other features' reactions to it, so every
cross-feature reaction is listed in one place and none hides in an import. A reaction runs in
the same session and transaction as the change, so what it does (enqueue a mail job) commits
or rolls back with the change itself.
"""

from collections.abc import Callable
from typing import Generic, TypeVar

from sqlmodel import Session

SubjectT = TypeVar("SubjectT")


class Hook(Generic[SubjectT]):
    def __init__(self) -> None:
        self._reactions: list[Callable[[Session, SubjectT], None]] = []

    def connect(self, reaction: Callable[[Session, SubjectT], None]) -> None:
        """Add a reaction; connecting the same one again changes nothing (create_app may run
        more than once in a process)."""
        if reaction not in self._reactions:
            self._reactions.append(reaction)

    def fire(self, session: Session, subject: SubjectT) -> None:
        """Run every reaction in `session`, before its transaction commits."""
        for reaction in self._reactions:
            reaction(session, subject)
