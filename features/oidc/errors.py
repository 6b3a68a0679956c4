"""The OIDC feature's failures. The browser-facing steps report most of theirs to the
frontend as `error=<code>` on its redirect URI instead (docs/oidc.md lists the codes)."""

from core.errors import BadRequestError, ConflictError, ForbiddenError, NotFoundError


class UnknownProvider(NotFoundError):
    default_detail = "No OpenID Connect provider has that name"


class RedirectUriNotAllowed(BadRequestError):
    # Anything but an exact member of OIDC_REDIRECT_URIS: the flow is no open redirect.
    default_detail = "redirect_uri is not one of the registered OIDC_REDIRECT_URIS"


class CallbackUrlTooLong(BadRequestError):
    default_detail = "The callback URL built from this request is too long: check the Host header"


class InvalidSignInState(BadRequestError):
    # A callback whose state is unknown, spent or expired: where it came from is not known,
    # so there is nowhere trusted to send the browser back to.
    default_detail = "Unknown or expired sign-in attempt: start again"


class InvalidExchangeCode(BadRequestError):
    default_detail = "Invalid, expired or already used code"


class CodeVerifierMismatch(BadRequestError):
    # OAuth's invalid_grant: the code was begun by another client (a login-CSRF attempt, an
    # app that caught another's redirect). It is spent all the same.
    default_detail = (
        "code_verifier is missing or does not match the code_challenge given at the "
        "authorize step; the code is spent: sign in again"
    )


class CurrentPasswordRequired(BadRequestError):
    default_detail = "current_password is required to link a provider to this account"


class RecentSignInRequired(ForbiddenError):
    # An account without a password has nothing to re-enter: a fresh sign-in stands for it.
    default_detail = (
        "Sign in again first: an account without a password links a provider within "
        "10 minutes of signing in"
    )


class IdentityNotFound(NotFoundError):
    # Another account's identity looks exactly like a missing one.
    default_detail = "Identity not found"


class LastSignInMethod(ConflictError):
    default_detail = (
        "This is the account's only way to sign in: set a password (password recovery) or "
        "link another provider first"
    )


class IdentityTaken(ConflictError):
    default_detail = "This provider account is already linked to an account"
    # The unique constraint decides when two callbacks race to link one provider account.
    constraint = "uq_identities_provider"
