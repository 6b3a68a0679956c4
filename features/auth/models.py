"""The schemas of the auth routes; sessions and their refresh tokens are the account's
(features/users/models.py), the token pair the token endpoint's (core/http/oauth2.py)."""

from sqlmodel import SQLModel

from core.data.types import opaque_token_field

REFRESH_TOKEN_MAX_LENGTH = 512


class RefreshRequest(SQLModel):
    refresh_token: str = opaque_token_field(REFRESH_TOKEN_MAX_LENGTH)
