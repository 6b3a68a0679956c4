"""The ceiling the app is measured against: the least FastAPI does for the same answers.

`/ping` is an async route that does no work, like the app's `/health`. `/select1` reaches
PostgreSQL the way FastAPI's tutorial does: a plain sync dependency yields a SQLModel session on
psycopg2 and a sync route runs one query with it (two thread hops: the dependency and the
route). `/select1-direct` is the stricter ceiling: a sync route that opens its own session and
runs the same query, one thread hop and no dependency generator.
"""

import os
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, FastAPI
from sqlalchemy import text
from sqlmodel import Session, create_engine

engine = create_engine(os.environ["DATABASE_URL"])
app = FastAPI()


def get_session() -> Iterator[Session]:
    with Session(engine) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


@app.get("/ping")
async def ping() -> dict[str, bool]:
    return {"ok": True}


@app.get("/select1")
def select1(session: SessionDep) -> dict[str, int]:
    value: int = session.exec(text("SELECT 1")).scalar_one()  # type: ignore[call-overload]
    return {"value": value}


@app.get("/select1-direct")
def select1_direct() -> dict[str, int]:
    with Session(engine) as session:
        value: int = session.exec(text("SELECT 1")).scalar_one()  # type: ignore[call-overload]
    return {"value": value}
