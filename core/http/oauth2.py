"""The OAuth2 password grant's request (RFC 6749, section 4.3.2) as a form model.

The same fields as FastAPI's `OAuth2PasswordRequestForm`, so Swagger's Authorize button and
any OAuth2 library can log in, but as a model read with `Annotated[LoginForm, Form()]`: the
request body then has a name of its own in the OpenAPI document (`LoginForm`), and generated
clients get a `LoginForm` type instead of `Body_login_api_v1_auth_login_post`.
"""

from pydantic import BaseModel, Field

# Every field is bounded before anything (the rate limiter, the database, bcrypt) sees it:
# an address is at most 254 characters (RFC 5321); a stored password at most 72 bytes, so a
# far longer one cannot match; scopes and client credentials are short by nature.
USERNAME_MAX_LENGTH = 254
PASSWORD_MAX_LENGTH = 1024
SCOPE_MAX_LENGTH = 1024
CLIENT_FIELD_MAX_LENGTH = 255


class LoginForm(BaseModel):
    grant_type: str | None = Field(
        default=None, pattern="^password$", description="`password`, when sent"
    )
    username: str = Field(
        min_length=1, max_length=USERNAME_MAX_LENGTH, description="The account's email address"
    )
    password: str = Field(
        min_length=1, max_length=PASSWORD_MAX_LENGTH, json_schema_extra={"format": "password"}
    )
    scope: str = Field(
        default="",
        max_length=SCOPE_MAX_LENGTH,
        description="Space-separated scopes; none are used",
    )
    client_id: str | None = Field(default=None, max_length=CLIENT_FIELD_MAX_LENGTH)
    client_secret: str | None = Field(
        default=None, max_length=CLIENT_FIELD_MAX_LENGTH, json_schema_extra={"format": "password"}
    )
