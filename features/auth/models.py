"""The schemas of the auth routes; sessions and their refresh tokens are the account's
(features/users/models.py), the token pair the token endpoint's (core/http/oauth2.py)."""

from sqlmodel import Field, SQLModel

REFRESH_TOKEN_MAX_LENGTH = 512


class RefreshRequest(SQLModel):
    refresh_token: str = Field(min_length=1, max_length=REFRESH_TOKEN_MAX_LENGTH)
