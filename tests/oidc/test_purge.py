"""Sign-in attempts and one-time codes past their time are deleted by a periodic job."""

from collections.abc import Callable
from datetime import timedelta

from fastapi import FastAPI
from sqlmodel import Session

from core import jobs
from core.data.clock import utc_now
from features.oidc.jobs import purge_expired_sign_in_attempts
from features.oidc.models import ExchangeCode, LoginAttempt
from tests.conftest import Account
from tests.oidc.conftest import FRONTEND, PROVIDER_NAME, Rows


def attempt(expires_in: timedelta, state_hash: str) -> LoginAttempt:
    return LoginAttempt(
        state_hash=state_hash,
        browser_hash="b" * 64,
        provider=PROVIDER_NAME,
        redirect_uri=FRONTEND,
        callback_uri=FRONTEND,
        nonce="n",
        code_verifier="v",
        expires_at=utc_now() + expires_in,
    )


def test_the_purge_deletes_expired_attempts_and_codes_only(
    app: FastAPI, account: Account, session_factory: Callable[[], Session], rows: Rows
) -> None:
    with session_factory() as session:
        session.add_all(
            [
                attempt(timedelta(seconds=-1), "expired".ljust(64, "0")),
                attempt(timedelta(minutes=5), "current".ljust(64, "0")),
                ExchangeCode(
                    code_hash="expired".ljust(64, "0"),
                    user_id=account.user.id,
                    provider=PROVIDER_NAME,
                    expires_at=utc_now() - timedelta(seconds=1),
                ),
                ExchangeCode(
                    code_hash="current".ljust(64, "0"),
                    user_id=account.user.id,
                    provider=PROVIDER_NAME,
                    expires_at=utc_now() + timedelta(seconds=30),
                ),
            ]
        )
        session.commit()

    context = jobs.JobContext(app.state.settings, app.state.database, 1, None)
    purge_expired_sign_in_attempts.run(context, {})

    assert [row.state_hash[:7] for row in rows.attempts()] == ["current"]
    assert [row.code_hash[:7] for row in rows.codes()] == ["current"]


def test_the_purge_is_a_periodic_job() -> None:
    declared = jobs.declared_jobs()["features.oidc.jobs.purge_expired_sign_in_attempts"]
    assert declared.schedule == "*/10 * * * *"
