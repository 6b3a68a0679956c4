"""The OAuth2 password grant's request (RFC 6749, section 4.3.2) as a form model.

The same fields as FastAPI's `OAuth2PasswordRequestForm`, so Swagger's Authorize button and
any OAuth2 library can log in, but as a model read with `Annotated[LoginForm, Form()]`: the
request body then has a name of its own in the OpenAPI document (`LoginForm`), and generated
clients get a `LoginForm` type instead of `Body_login_api_v1_auth_login_post`.
"""

from pydantic import BaseModel, Field


class LoginForm(BaseModel):
    grant_type: str | None = Field(
        default=None, pattern="^password$", description="`password`, when sent"
    )
    username: str = Field(description="The account's email address")
    password: str = Field(json_schema_extra={"format": "password"})
    scope: str = Field(default="", description="Space-separated scopes; none are used")
    client_id: str | None = None
    client_secret: str | None = Field(default=None, json_schema_extra={"format": "password"})
