"""Application settings, read from the environment and an optional `.env` file."""

import ipaddress
import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Keys that appear in tutorials and templates: a production deploy must not run with one.
KNOWN_WEAK_SECRET_KEYS = frozenset(
    {"", "changethis", "change-me", "changeme", "secret", "secret-key", "dev-secret-key"}
)
MIN_SECRET_KEY_LENGTH = 32
DEVELOPMENT_SECRET_KEY = "dev-secret-key"  # noqa: S105 - refused in production
OIDC_DEFAULT_SCOPES = ("openid", "email", "profile")
# URL schemes a browser would run or embed rather than navigate to: never a redirect target.
SCRIPT_SCHEMES = frozenset({"javascript", "data", "vbscript", "file", "blob", "about"})


def is_loopback_host(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost: an address that never leaves this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class OidcProviderSettings(BaseModel):
    """One OpenID Connect provider people may sign in with (an entry of OIDC_PROVIDERS)."""

    # In URLs (/auth/oidc/<name>/...) and in the identities table.
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,31}$")
    issuer: str = Field(min_length=1, max_length=512)
    client_id: str = Field(min_length=1, max_length=512)
    # Left out: read from OIDC_<NAME>_CLIENT_SECRET, in the environment or SECRETS_DIR.
    client_secret: SecretStr = SecretStr("")
    scopes: list[str] = Field(default=list(OIDC_DEFAULT_SCOPES), min_length=1)
    # Whether a new identity whose verified address matches an existing (verified) account
    # is linked to it. Turn it off for a provider whose users may change their own address
    # without proving it (Keycloak's "edit email" with verification off): its address
    # would then be whatever its user typed.
    link_by_email: bool = True

    @field_validator("issuer")
    @classmethod
    def https_or_loopback(cls, value: str) -> str:
        """Discovery, keys and the code exchange travel to the issuer: over TLS, unless it
        runs on this machine (a development or test provider)."""
        parts = urlsplit(value)
        if parts.scheme == "https" and parts.hostname:
            return value
        if parts.scheme == "http" and parts.hostname and is_loopback_host(parts.hostname):
            return value
        raise ValueError("an issuer must be an https:// URL (http:// only on a loopback address)")

    @field_validator("scopes")
    @classmethod
    def openid_scope(cls, value: list[str]) -> list[str]:
        if "openid" not in value:
            raise ValueError("scopes must include openid")
        return value

    @property
    def secret_setting(self) -> str:
        """The setting that holds this provider's client secret when the entry has none."""
        return f"OIDC_{self.name.upper().replace('-', '_')}_CLIENT_SECRET"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        # A directory with one file per setting, named after it: how Kubernetes mounts a
        # Secret. Secrets read from files stay out of the environment, which every child
        # process inherits and error reports often dump. The environment and .env win.
        secrets_dir=os.environ.get("SECRETS_DIR") or None,
    )

    PROJECT_NAME: str = "FastAPI Accounts"
    ENVIRONMENT: Literal["local", "test", "production"] = "local"
    SECRET_KEY: str = DEVELOPMENT_SECRET_KEY

    DATABASE_URL: str = "sqlite:///./app.db"
    # Reads may go to a replica; empty means "same as DATABASE_URL".
    DATABASE_READ_URL: str = ""
    # Every request holds at most one connection, and only inside one worker thread, and the
    # threads doing database work are capped at this size: a thread never waits for a
    # connection. A worker keeps one pool per database URL (two with a read replica).
    DATABASE_POOL_SIZE: int = Field(default=10, ge=1)
    DATABASE_MAX_OVERFLOW: int = Field(default=0, ge=0)
    DATABASE_POOL_TIMEOUT: float = Field(default=10.0, gt=0)
    DATABASE_CONNECT_TIMEOUT: int = Field(default=3, ge=1)
    # Ping each connection before use (one more round trip per request); see core/data/db.py.
    DATABASE_PRE_PING: bool = False
    DATABASE_POOL_RECYCLE: int = Field(default=1800, ge=-1)
    # Longest a request waits on one unit of database work before it answers 503: a database
    # that stops answering (hung host, network partition) must not hang every request.
    DATABASE_WORK_TIMEOUT: float = Field(default=10.0, gt=0)

    # Shared rate-limit counters and cache; empty: each process counts and caches on its own.
    REDIS_URL: str = ""
    # How long a cached GET response may be served: a write through the app invalidates it at
    # once; this bounds what a write from elsewhere (psql, another app) takes to show.
    CACHE_TTL_SECONDS: float = Field(default=60, gt=0)
    # How long the authenticated user read for a token is served from Redis. A revoking write
    # invalidates it at once; while Redis cannot be reached, such a write waits this long
    # before it answers, so no worker accepts the revoked token after the response.
    CACHE_USER_TTL_SECONDS: float = Field(default=10, gt=0, le=300)
    # A Redis call slower than this fails: the cache reads the database instead, rate limits
    # count in this process. Redis is then left alone for the back-off before it is tried
    # again, so an outage costs one timeout per worker and back-off, not one per request.
    REDIS_TIMEOUT_SECONDS: float = Field(default=0.25, gt=0)
    REDIS_BACKOFF_SECONDS: float = Field(default=2.0, ge=0)

    ACCESS_TOKEN_EXPIRE_MINUTES: float = Field(default=15, gt=0)
    REFRESH_TOKEN_EXPIRE_DAYS: float = Field(default=14, gt=0)
    BCRYPT_ROUNDS: int = Field(default=12, ge=4, le=31)
    # How many bcrypt computations may run at once per worker; the rest wait their turn so
    # a login flood cannot take every thread away from ordinary requests.
    HASHING_CONCURRENCY: int = Field(default=2, ge=1)

    CORS_ORIGINS: Annotated[list[str], NoDecode] = []
    # Response headers a page on one of those origins may read: a browser hides every other
    # one from its scripts. These are the ones docs/clients.md tells clients to use.
    CORS_EXPOSE_HEADERS: Annotated[list[str], NoDecode] = [
        "Retry-After",
        "X-Request-ID",
        "ETag",
        "WWW-Authenticate",
    ]

    FIRST_SUPERUSER_EMAIL: str = ""
    FIRST_SUPERUSER_PASSWORD: str = ""

    # Sign-in attempts per client address, and per account from one address.
    LOGIN_RATE_LIMIT: str = "10/minute"
    # Failed sign-ins per account from every address; past it, only addresses that have not
    # failed at the account are heard (features/auth/service.py: the owner still gets in).
    LOGIN_ACCOUNT_FAILURE_LIMIT: str = "20/hour"
    # Sign-ups per client address: each answers whether an address has an account (409).
    REGISTER_RATE_LIMIT: str = "20/hour"
    # Requests per API key, on every instance together.
    API_KEY_RATE_LIMIT: str = "600/minute"
    # Recovery and verification mails asked for, per address and per client IP.
    RECOVERY_RATE_LIMIT: str = "5/hour"

    # Without SMTP_HOST mails are written to the log instead of sent (local development).
    SMTP_HOST: str = ""
    SMTP_PORT: int = Field(default=587, ge=1, le=65535)
    SMTP_USER: str = ""
    SMTP_PASSWORD: str = ""
    SMTP_STARTTLS: bool = True
    # Implicit TLS from the first byte (usually port 465); STARTTLS is then not used.
    SMTP_SSL: bool = False
    EMAILS_FROM: str = "noreply@example.com"
    # Where the links in mails point: the web app that shows the reset and verify pages.
    FRONTEND_URL: str = "http://localhost:3000"
    PASSWORD_RESET_EXPIRE_MINUTES: float = Field(default=60, gt=0)
    VERIFY_EMAIL_EXPIRE_HOURS: float = Field(default=48, gt=0)
    # After an email change, the previous address gets a link that puts it back and ends
    # every session: days, since its owner may not read that mailbox every day.
    EMAIL_RESTORE_EXPIRE_DAYS: float = Field(default=7, gt=0)
    # Login refuses accounts whose address has not been confirmed.
    REQUIRE_VERIFIED_EMAIL: bool = False
    # --- OpenID Connect sign-in (core/oidc.py, features/oidc; docs/oidc.md) ---
    # JSON list: [{"name": "google", "issuer": "https://accounts.google.com", "client_id":
    # "...", "client_secret": "...", "scopes": ["openid", "email", "profile"]}]. A client
    # secret left out is read from OIDC_<NAME>_CLIENT_SECRET (environment or SECRETS_DIR).
    OIDC_PROVIDERS: list[OidcProviderSettings] = []
    # The frontend pages the sign-in flow may send a browser back to, exact match, comma
    # separated: anything else is refused, so the flow is no open redirect.
    OIDC_REDIRECT_URIS: Annotated[list[str], NoDecode] = []
    # This API's public URL as browsers reach it (https://api.example.com): each provider
    # must have <it>/api/v1/auth/oidc/<name>/callback registered. Empty: the request's own.
    OIDC_CALLBACK_BASE_URL: str = ""
    # One-time codes traded for tokens (POST /auth/oidc/exchange), per client address.
    OIDC_EXCHANGE_RATE_LIMIT: str = "30/minute"
    # Sign-ins and links begun (GET .../authorize, POST /users/me/identities/<name>), per
    # client address: each stores an attempt (and a link checks a password).
    OIDC_AUTHORIZE_RATE_LIMIT: str = "30/minute"
    # A provider's discovery document and keys are fetched again after this long; an ID
    # token signed by a key not among them fetches the keys again, at most once per
    # OIDC_JWKS_REFETCH_SECONDS (a provider rotates keys rarely; a forger would otherwise make
    # every request a fetch).
    OIDC_METADATA_TTL_SECONDS: float = Field(default=3600, gt=0)
    OIDC_JWKS_REFETCH_SECONDS: float = Field(default=60, ge=0)
    # A provider slower than this, or unreachable, gives 503 (tried again after 5 seconds).
    OIDC_HTTP_TIMEOUT_SECONDS: float = Field(default=5, gt=0)
    # --- background jobs (core/jobs) ---
    # "queue": durable, in PostgreSQL, run by `python manage.py worker`. "in-process": run in
    # the process that enqueued them, right after the commit; nothing is stored, so a job
    # still running or waiting for a retry is lost when that process stops (SQLite, tests).
    # "auto": queue on PostgreSQL, in-process on SQLite.
    JOBS_MODE: Literal["auto", "queue", "in-process"] = "auto"
    # Jobs one worker process runs at once (each in its own thread).
    JOBS_CONCURRENCY: int = Field(default=4, ge=1, le=100)
    # Tries per job, the first included; then it stays `failed` until `manage.py jobs retry`.
    JOBS_MAX_ATTEMPTS: int = Field(default=10, ge=1, le=100)
    # Wait before retry n: a random time between half and all of min(MAX, BASE * 2^(n-1)).
    JOBS_RETRY_BASE_SECONDS: float = Field(default=10.0, gt=0)
    JOBS_RETRY_MAX_SECONDS: float = Field(default=1800.0, gt=0)
    # On SIGTERM a worker takes no new job and gives the ones it holds this long to finish;
    # any still running then goes back to the queue (another worker runs it again).
    JOBS_SHUTDOWN_TIMEOUT: float = Field(default=20.0, ge=0)
    # A worker records that it is alive this often; when it has been silent for
    # JOBS_STALLED_AFTER_SECONDS (killed, host lost), the others put its jobs back in the queue.
    JOBS_HEARTBEAT_SECONDS: float = Field(default=10.0, gt=0)
    JOBS_STALLED_AFTER_SECONDS: float = Field(default=30.0, gt=0)
    # Longest a due job waits before a worker looks (new jobs also wake workers at once).
    JOBS_POLL_SECONDS: float = Field(default=5.0, gt=0)
    # How often a worker logs the queue depth and the age of the oldest waiting job.
    JOBS_STATS_SECONDS: float = Field(default=60.0, gt=0)
    # The job worker serves its own /metrics (job outcomes and durations) on this port when
    # METRICS_ENABLED; 0 turns it off. The web servers' /metrics shows the queue's depth.
    JOBS_METRICS_PORT: int = Field(default=9100, ge=0, le=65535)
    # Periodic jobs (core/jobs `periodic`, e.g. the audit log's retention): a worker defers
    # them when due (PostgreSQL: one worker per due time, however many run), an in-process
    # runner runs them. false: this process leaves them to the others.
    JOBS_SCHEDULES: bool = True

    # The audit log (features/audit) keeps events this many days; a periodic job removes
    # older ones every hour.
    AUDIT_RETENTION_DAYS: int = Field(default=365, ge=1, le=36500)

    MAX_BODY_BYTES: int = Field(default=1024 * 1024, ge=1)
    # Requests a worker works on at once; the others wait their turn in arrival order, so
    # under overload no request waits far longer than the rest. Probes and /metrics never
    # wait. 0: no bound.
    MAX_CONCURRENT_REQUESTS: int = Field(default=40, ge=0)
    DOCS_ENABLED: bool = True
    LOG_LEVEL: str = "INFO"
    WEB_CONCURRENCY: int = Field(default=0, ge=0)

    # Observability (core/http/observability.py). /metrics and the HTTP metrics; false removes both.
    METRICS_ENABLED: bool = True
    # OTLP/HTTP collector, e.g. http://otel-collector:4318; empty: no tracing at all.
    OTEL_EXPORTER_OTLP_ENDPOINT: str = ""
    OTEL_SERVICE_NAME: str = "fastapi-accounts"

    @field_validator("CORS_ORIGINS", "CORS_EXPOSE_HEADERS", "OIDC_REDIRECT_URIS", mode="before")
    @classmethod
    def split_list(cls, value: object) -> object:
        """Accept `a,b` as well as a JSON list, the two forms operators write."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                import json

                return json.loads(text)
            return [item.strip() for item in text.split(",") if item.strip()]
        return value

    @field_validator(
        "LOGIN_RATE_LIMIT",
        "LOGIN_ACCOUNT_FAILURE_LIMIT",
        "REGISTER_RATE_LIMIT",
        "RECOVERY_RATE_LIMIT",
        "API_KEY_RATE_LIMIT",
        "OIDC_EXCHANGE_RATE_LIMIT",
        "OIDC_AUTHORIZE_RATE_LIMIT",
    )
    @classmethod
    def check_rate_limit_notation(cls, value: str) -> str:
        """A typo here would fail every request it meters; fail at start-up instead."""
        if value.strip():
            from limits import parse

            parse(value)
        return value

    @field_validator("OTEL_EXPORTER_OTLP_ENDPOINT")
    @classmethod
    def check_otlp_endpoint(cls, value: str) -> str:
        """A typo would silently lose every trace; fail at start-up instead."""
        value = value.strip()
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("OTEL_EXPORTER_OTLP_ENDPOINT must be an http:// or https:// URL")
        return value

    @field_validator("OIDC_PROVIDERS", mode="before")
    @classmethod
    def providers_from_json(cls, value: object) -> object:
        """The environment gives JSON text, decoded by the settings source; so does a
        file in SECRETS_DIR. Text given any other way is decoded here."""
        if isinstance(value, str):
            import json

            return json.loads(value) if value.strip() else []
        return value

    @field_validator("OIDC_REDIRECT_URIS")
    @classmethod
    def absolute_redirect_uris(cls, value: list[str]) -> list[str]:
        """Web pages (http, https, with a host) or a mobile app's own scheme (RFC 8252,
        `com.example.app:/callback`); never a scheme that runs or embeds content."""
        for uri in value:
            parts = urlsplit(uri)
            scheme = parts.scheme.lower()
            if (
                not scheme
                or scheme in SCRIPT_SCHEMES
                or parts.fragment
                or (scheme in ("http", "https") and not parts.hostname)
            ):
                raise ValueError(f"OIDC_REDIRECT_URIS: {uri!r} is not an absolute URL to return to")
        return value

    @field_validator("OIDC_CALLBACK_BASE_URL")
    @classmethod
    def callback_base_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if value and urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("OIDC_CALLBACK_BASE_URL must be an http:// or https:// URL")
        return value

    @model_validator(mode="after")
    def oidc_client_secrets(self) -> "Settings":
        """Each provider's name once, and a client secret for each: its entry's, or
        OIDC_<NAME>_CLIENT_SECRET's from the environment or a file in SECRETS_DIR."""
        names = [provider.name for provider in self.OIDC_PROVIDERS]
        if len(names) != len(set(names)):
            raise ValueError("OIDC_PROVIDERS: each name at most once")
        secrets_dir = os.environ.get("SECRETS_DIR")
        for provider in self.OIDC_PROVIDERS:
            if provider.client_secret.get_secret_value():
                continue
            secret = os.environ.get(provider.secret_setting, "")
            secret_file = Path(secrets_dir, provider.secret_setting) if secrets_dir else None
            if not secret and secret_file is not None and secret_file.is_file():
                secret = secret_file.read_text().strip()
            if not secret:
                raise ValueError(
                    f"no client secret for OIDC provider {provider.name!r}: "
                    f"set it in OIDC_PROVIDERS or {provider.secret_setting}"
                )
            provider.client_secret = SecretStr(secret)
        return self

    @model_validator(mode="after")
    def oidc_redirect_uris_over_tls_in_production(self) -> "Settings":
        """The one-time code travels in the redirect URI's query: over plain http anyone on
        the path reads it. A page on this machine (development) or an app's own scheme may."""
        if self.ENVIRONMENT != "production":
            return self
        for uri in self.OIDC_REDIRECT_URIS:
            parts = urlsplit(uri)
            if parts.scheme.lower() == "http" and not is_loopback_host(parts.hostname or ""):
                raise ValueError(
                    f"OIDC_REDIRECT_URIS: {uri!r} must be https:// in production "
                    "(http:// only on a loopback address)"
                )
        return self

    @field_validator("FRONTEND_URL")
    @classmethod
    def strip_trailing_slash(cls, value: str) -> str:
        return value.strip().rstrip("/")

    @model_validator(mode="after")
    def refuse_weak_secret_in_production(self) -> "Settings":
        if not self.SECRET_KEY and self.ENVIRONMENT != "production":
            # An empty line copied from .env.example: fine for a laptop, never for production.
            self.SECRET_KEY = DEVELOPMENT_SECRET_KEY
        if self.ENVIRONMENT == "production" and (
            self.SECRET_KEY.lower() in KNOWN_WEAK_SECRET_KEYS
            or len(self.SECRET_KEY) < MIN_SECRET_KEY_LENGTH
        ):
            raise ValueError(
                "SECRET_KEY must be set to a random value of at least "
                f"{MIN_SECRET_KEY_LENGTH} characters in production "
                '(python -c "import secrets; print(secrets.token_urlsafe(48))")'
            )
        return self

    @model_validator(mode="after")
    def check_job_settings(self) -> "Settings":
        if self.JOBS_MODE == "queue" and not self.DATABASE_URL.startswith("postgresql"):
            raise ValueError("JOBS_MODE=queue needs PostgreSQL (DATABASE_URL=postgresql+...)")
        if self.JOBS_STALLED_AFTER_SECONDS <= 2 * self.JOBS_HEARTBEAT_SECONDS:
            # One late heartbeat must not make a live worker's jobs run a second time.
            raise ValueError("JOBS_STALLED_AFTER_SECONDS must exceed 2 x JOBS_HEARTBEAT_SECONDS")
        if self.JOBS_RETRY_MAX_SECONDS < self.JOBS_RETRY_BASE_SECONDS:
            raise ValueError("JOBS_RETRY_MAX_SECONDS must be at least JOBS_RETRY_BASE_SECONDS")
        return self

    @property
    def jobs_run_in_process(self) -> bool:
        """True when jobs run in the enqueuing process instead of a durable queue."""
        if self.JOBS_MODE == "auto":
            return not self.DATABASE_URL.startswith("postgresql")
        return self.JOBS_MODE == "in-process"


@lru_cache
def get_settings() -> Settings:
    return Settings()
