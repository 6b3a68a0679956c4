"""`Reach` (core/permissions.py): whose rows a caller may read and change."""

import uuid

import pytest

from core.permissions import Reach

CALLER, OTHER = uuid.uuid4(), uuid.uuid4()


def test_a_caller_reads_and_changes_their_own_rows_only() -> None:
    reach = Reach(caller_id=CALLER)
    assert (reach.may_read(CALLER), reach.may_change(CALLER)) == (True, True)
    assert (reach.may_read(OTHER), reach.may_change(OTHER)) == (False, False)


def test_reads_any_reads_every_owners_rows_and_changes_only_its_own() -> None:
    reach = Reach(caller_id=CALLER, reads_any=True)
    assert (reach.may_read(OTHER), reach.may_change(OTHER)) == (True, False)
    assert reach.may_change(CALLER)


def test_changes_any_reads_and_changes_every_owners_rows() -> None:
    reach = Reach(caller_id=CALLER, reads_any=True, changes_any=True)
    assert (reach.may_read(OTHER), reach.may_change(OTHER)) == (True, True)


def test_changing_every_owners_rows_without_reading_them_is_refused() -> None:
    with pytest.raises(ValueError, match="read them too"):
        Reach(caller_id=CALLER, changes_any=True)
