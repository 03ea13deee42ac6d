"""Settings: every option of the package, read from ``C2C__``-prefixed environment variables.

Nested models are reached with ``__``: ``C2C__REDIS__URL``, ``C2C__AUTH__JWT__COOKIE__AGE``...
``config.settings`` is the process-wide singleton; modules read it at call time (never copy a value
at import) so that tests and services can replace it.
"""

from __future__ import annotations

import enum
import json
import os
import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    Field,
    PlainSerializer,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import InitErrorDetails, PydanticCustomError
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from c2casgiutils import _redis_options

ENV_PREFIX = "C2C__"
ENV_NESTED_DELIMITER = "__"
SENTRY_TAG_PREFIX = f"{ENV_PREFIX}SENTRY{ENV_NESTED_DELIMITER}TAG_"

# --------------------------------------------------------------------------------------------------
# Value types shared by several settings
# --------------------------------------------------------------------------------------------------

_NUMBER_RE = re.compile(r"^\s*\d+(\.\d+)?\s*$")
_ISO_DURATION_RE = re.compile(
    r"^P(?!$)(?:(?P<weeks>\d+(?:\.\d+)?)W)?(?:(?P<days>\d+(?:\.\d+)?)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$",
    re.IGNORECASE,
)
DURATION_HELP = "a number of seconds (e.g. 600) or an ISO-8601 duration (e.g. PT10M, P7D)"


def parse_duration(value: Any) -> timedelta:
    """Read a duration from seconds or ISO-8601; anything else is an error, never a silent 0."""
    if isinstance(value, timedelta):
        result = value
    elif isinstance(value, bool):
        raise ValueError(f"expected {DURATION_HELP}, got a boolean")
    elif isinstance(value, int | float):
        result = timedelta(seconds=value)
    elif isinstance(value, str):
        text = value.strip()
        if _NUMBER_RE.match(text):
            result = timedelta(seconds=float(text))
        else:
            match = _ISO_DURATION_RE.match(text)
            if match is None:
                raise ValueError(f"expected {DURATION_HELP}, got {value!r}")
            parts = {key: float(number) for key, number in match.groupdict().items() if number is not None}
            result = timedelta(**parts)
    else:
        raise ValueError(f"expected {DURATION_HELP}, got {type(value).__name__}")
    if result < timedelta(0):
        raise ValueError(f"expected a positive duration: {DURATION_HELP}")
    return result


def _duration_to_seconds(value: timedelta) -> float:
    return value.total_seconds()


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(_duration_to_seconds, return_type=float, when_used="json"),
    WithJsonSchema({"type": "number", "description": DURATION_HELP}),
]


def _split_list(value: Any) -> Any:
    """Accept a JSON list, a comma-separated string, or a list."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                return json.loads(text)
            except json.JSONDecodeError as error:
                raise ValueError(f"invalid JSON list: {error}") from error
        return [item.strip() for item in text.split(",") if item.strip()]
    return value


CommaList = Annotated[list[str], NoDecode, BeforeValidator(_split_list)]


def _convert_option_value(raw: str) -> Any:
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for converter in (int, float):
        try:
            return converter(raw)
        except ValueError:
            pass
    return raw


def parse_key_values(value: Any) -> Any:
    """Read ``k=v,k=v`` (or a JSON object) into a dict, converting numbers and booleans; None is no option."""
    if value is None:  # the documented default of C2C__REDIS__OPTIONS is None
        return {}
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return {}
        if text.startswith("{"):
            try:
                return json.loads(text)
            except json.JSONDecodeError as error:
                raise ValueError(f"invalid JSON object: {error}") from error
        result: dict[str, Any] = {}
        for item in text.split(","):
            if not item.strip():
                continue
            key, separator, raw = item.partition("=")
            if not separator or not key.strip():
                raise ValueError(f"expected 'key=value,key=value', got {item!r}")
            result[key.strip()] = _convert_option_value(raw.strip())
        return result
    return value


KeyValues = Annotated[dict[str, Any], NoDecode, BeforeValidator(parse_key_values)]

_REDIS_SECRET_FIELDS = frozenset({"url", "options", "sentinel_options"})
"""The Redis settings whose value may hold a password."""


def _hides_input(location: tuple[int | str, ...], redis_at: tuple[str, ...]) -> bool:
    """Whether an error at ``location`` is about the Redis section at ``redis_at`` as a whole or a secret field."""
    if location[: len(redis_at)] != redis_at:
        return False
    rest = location[len(redis_at) :]
    return not rest or rest[0] in _REDIS_SECRET_FIELDS


def _without_secret_inputs(error: ValidationError, redis_at: tuple[str, ...]) -> ValidationError:
    """``error`` with no input for the errors about the Redis section (at ``redis_at``) or its secret fields.

    pydantic keeps the input of a failed check in the text, the repr and ``errors()`` of the error: the raw
    value of a field, the whole section (every field) for a check across fields. A Redis URL or option string
    may hold a password; the messages of the checks never show one.
    """
    details: list[InitErrorDetails] = []
    for detail in error.errors(include_url=False):
        location = tuple(detail["loc"])
        details.append(
            InitErrorDetails(
                type=PydanticCustomError(detail["type"], detail["msg"]),  # the message, without its context
                loc=location,
                input=None if _hides_input(location, redis_at) else detail["input"],
            )
        )
    return ValidationError.from_exception_data(error.title, details)


class GitHubAccessType(enum.StrEnum):
    """Repository permission levels on GitHub."""

    PULL = "pull"
    PUSH = "push"
    ADMIN = "admin"


# --------------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------------


class Redis(BaseModel):
    """Redis connection, used by broadcast, logging overrides and the Redis health check."""

    url: str | None = Field(
        default=None,
        description="Redis connection URL: 'redis://[user:password@]host:port/db', 'rediss://...' for TLS or "
        "'unix:///path/redis.sock?db=0'; percent-encode the user name and password ('#' as %23, '/' as %2F)",
    )
    options: KeyValues = Field(
        default_factory=dict,
        description="Redis connection options, e.g. 'socket_timeout=5,ssl=True'. Keyword arguments of redis-py's "
        "client, checked at start-up; ssl=True with a redis:// URL connects with TLS (as rediss://), "
        "ssl_* options such as ssl_ca_certs need TLS",
    )
    sentinels: str | None = Field(default=None, description="Redis Sentinels, as 'host:port,host:port'")
    servicename: str | None = Field(default=None, description="Redis service name for Sentinel")
    sentinel_options: KeyValues = Field(
        default_factory=dict,
        description="Connection options of the Sentinels themselves (not of the Redis servers), e.g. "
        "'password=...' for a Sentinel with requirepass, 'username=...', 'ssl=True,ssl_ca_certs=/ca.pem'; "
        "the connect and socket timeouts apply unless given here",
    )
    db: int = Field(
        default=0,
        ge=0,
        description="Redis database number; applies when the URL names none (a URL naming another one is refused)",
    )
    broadcast_prefix: str = Field(default="broadcast_api_", description="Redis prefix for broadcast channels")
    socket_timeout: Duration = Field(
        default=timedelta(seconds=5), description="Timeout of one Redis command, so no call waits forever"
    )
    connect_timeout: Duration = Field(
        default=timedelta(seconds=2), description="Timeout to open a connection to Redis or a Sentinel"
    )
    retries: int = Field(
        default=1,
        ge=0,
        le=10,
        description="Immediate retries of a Redis command, each on a new connection, after a connection error "
        "(a stale connection after a Redis restart) or a timeout; 0 fails at the first error",
    )

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as error:
            raise _without_secret_inputs(error, ()) from None

    @model_validator(mode="before")
    @classmethod
    def _read_options_without_echoing_them(cls, data: Any) -> Any:
        """Read both option strings here: a field error would echo the raw value, which may hold a password."""
        if not isinstance(data, dict):
            return data
        option_fields = (("options", "C2C__REDIS__OPTIONS"), ("sentinel_options", "C2C__REDIS__SENTINEL_OPTIONS"))
        for field, variable in option_fields:
            if isinstance(data.get(field), str):
                try:
                    data = {**data, field: parse_key_values(data[field])}
                except ValueError as error:
                    reason = str(error) if str(error).startswith("invalid JSON") else "an item has no '='"
                    raise ValueError(
                        f"{variable}: expected 'key=value,key=value' or a JSON object ({reason}; "
                        "the value is not shown, it may hold a password)"
                    ) from None
        return data

    @field_validator("sentinels")
    @classmethod
    def _check_sentinels(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        _redis_options.parse_sentinels(value)
        return value

    @model_validator(mode="after")
    def _check_servicename(self) -> Redis:
        # Sentinel service name, URL, TLS and database checks; the messages never show a credential.
        _redis_options.resolve(self)
        return self


class Prometheus(BaseModel):
    """Prometheus metrics."""

    prefix: str = Field(default="c2casgiutils_", description="Prefix for Prometheus metrics")
    port: int | None = Field(
        default=9000, ge=0, le=65535, description="Port for Prometheus metrics (empty to disable the server)"
    )
    host: str = Field(
        default="0.0.0.0",  # noqa: S104 - the metrics port is scraped from outside the container
        min_length=1,
        description="Bind address of the metrics server (127.0.0.1 to keep it local)",
    )
    multiproc_dir: str | None = Field(
        default=None,
        description="Directory for prometheus_client's multiprocess mode (several workers); "
        "PROMETHEUS_MULTIPROC_DIR is used when this is not set",
    )

    @field_validator("port", mode="before")
    @classmethod
    def _empty_port(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() in ("", "none", "off"):
            return None
        return value


class Sentry(BaseModel):
    """Sentry options, passed to ``sentry_sdk.init``."""

    dsn: str | None = Field(default=None, description="Sentry DSN")
    debug: bool = Field(default=False, description="Enable Sentry debug mode")
    release: str | None = Field(default=None, description="Sentry release version")
    environment: str = Field(default="production", description="Sentry environment")
    dist: str | None = Field(default=None, description="Sentry distribution")
    sample_rate: float = Field(default=1.0, ge=0.0, le=1.0, description="Sample rate for error events")
    ignore_errors: CommaList = Field(default_factory=list, description="List of exception class names to ignore")
    max_breadcrumbs: int = Field(default=100, ge=0, description="Maximum number of breadcrumbs to capture")
    attach_stacktrace: bool = Field(default=False, description="Attach stack trace to all messages")
    send_default_pii: bool | None = Field(default=None, description="Send default PII")
    event_scrubber: str | None = Field(
        default=None, description="Event scrubber for sensitive information: comma-separated extra denylist keys"
    )
    include_source_context: bool = Field(default=True, description="Include source context in events")
    include_local_variables: bool = Field(default=True, description="Include local variables in events")
    add_full_stack: bool = Field(default=False, description="Add full stack trace to events")
    max_stack_frames: int = Field(default=100, ge=0, description="Maximum number of stack frames to capture")
    server_name: str | None = Field(default=None, description="Server name for Sentry events")
    project_root: str = Field(default_factory=os.getcwd, description="Root directory of the project")
    in_app_include: CommaList = Field(default_factory=list, description="List of module prefixes that are in the app")
    in_app_exclude: CommaList = Field(
        default_factory=list, description="List of module prefixes that are not in the app"
    )
    max_request_body_size: Literal["never", "small", "medium", "always"] = Field(
        default="medium", description="Maximum request body size to capture"
    )
    max_value_length: int = Field(default=1024, ge=1, description="Maximum length of values in event payloads")
    ca_certs: str | None = Field(default=None, description="Path to alternative CA bundle file in PEM format")
    send_client_reports: bool = Field(default=True, description="Send client reports to Sentry")
    tags: dict[str, str] = Field(
        default_factory=dict,
        description="Default tags for Sentry events, loaded from environment variables with prefix "
        "C2C__SENTRY__TAG_ to set tags. The tag name will be the part after the prefix, converted to "
        "lowercase. For example, C2C__SENTRY__TAG_SERVICE=my-service will set a tag named service "
        "(lowercase) with value my-service.",
        # Not a sentry_sdk.init option (tags go through set_tag): left out of model_dump() so that the
        # specification's ``sentry_sdk.init(**config.settings.sentry.model_dump())`` works.
        exclude=True,
    )

    @property
    def url(self) -> str | None:
        """The DSN, under the name the specification's Sentry snippet logs (``config.settings.sentry.url``)."""
        return self.dsn


class AuthJWTCookie(BaseModel):
    """The cookie that carries the login JWT."""

    name: str = Field(default="c2c-jwt-auth", min_length=1, description="Authentication cookie name")
    age: Duration = Field(
        default=timedelta(days=7), description="Authentication cookie age in seconds (default: 7 days)"
    )
    same_site: Literal["lax", "strict", "none"] = Field(
        default="lax",
        description="SameSite attribute for the JWT cookies (state and auth token). Defaults to 'lax' to "
        "support OAuth and other redirect-based login flows that rely on the cookie being sent on top-level "
        "navigation from external sites. Use 'strict' for stronger CSRF protection when such flows are not "
        "required.",
    )
    secure: bool = Field(default=True, description="Whether the JWT cookie should be secure")
    path: str | None = Field(default=None, description="Path for the JWT cookie (default: the c2c index path)")


JWT_ALGORITHMS = ("HS256", "HS384", "HS512")


class AuthJWT(BaseModel):
    """JWT signing of the login cookies."""

    secret: str | None = Field(
        default=None, description="JWT secret key (at least 32 bytes; required with GitHub authentication)"
    )
    algorithm: Literal["HS256", "HS384", "HS512"] = Field(default="HS256", description="JWT algorithm (default: HS256)")
    cookie: AuthJWTCookie = Field(default_factory=AuthJWTCookie)


class AuthGitHub(BaseModel):
    """GitHub OAuth application and repository used to grant access."""

    repository: str | None = Field(default=None, description="GitHub repository for authentication, as 'owner/name'")
    access_type: GitHubAccessType = Field(
        default=GitHubAccessType.PULL, description="GitHub access type needed for admin access"
    )
    access_type_read_only: GitHubAccessType = Field(
        default=GitHubAccessType.PULL, description="GitHub access type needed for read-only access"
    )
    access_type_read_write: GitHubAccessType = Field(
        default=GitHubAccessType.PUSH, description="GitHub access type needed for read-write access"
    )
    access_type_admin: GitHubAccessType | None = Field(
        default=None,
        description="GitHub access type needed for admin access (default: the value of access_type)",
    )
    authorize_url: str = Field(
        default="https://github.com/login/oauth/authorize", description="GitHub OAuth authorization URL"
    )
    token_url: str = Field(default="https://github.com/login/oauth/access_token", description="GitHub OAuth token URL")
    user_url: str = Field(default="https://api.github.com/user", description="GitHub user API URL")
    repo_url: str = Field(default="https://api.github.com/repos", description="GitHub repository API URL")
    client_id: str | None = Field(default=None, description="GitHub OAuth client ID")
    client_secret: str | None = Field(default=None, description="GitHub OAuth client secret")
    scope: str = Field(default="repo", description="GitHub OAuth scope")
    proxy_url: str | None = Field(default=None, description="GitHub proxy URL")
    state_cookie: str = Field(default="c2c-state", min_length=1, description="GitHub state cookie name")
    state_cookie_age: Duration = Field(
        default=timedelta(minutes=10), description="GitHub state cookie age in seconds (default: 10 minutes)"
    )
    access_token_expiration_margin: Duration = Field(
        default=timedelta(seconds=60),
        description="Refresh the GitHub access token when it expires within this margin",
    )
    permission_cache_ttl: Duration = Field(
        default=timedelta(seconds=60),
        description="How long a user's repository permission is cached before GitHub is asked again",
    )
    timeout: Duration = Field(default=timedelta(seconds=10), description="Timeout of every call to GitHub")

    @field_validator("repository")
    @classmethod
    def _check_repository(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", value):
            raise ValueError(f"expected 'owner/name', got {value!r}")
        return value


class AuthTest(BaseModel):
    """Test authentication: every request is logged in as this user (never in production)."""

    username: str | None = Field(default=None, description="Test username")


class AuthRateLimit(BaseModel):
    """Slow down repeated failed logins from one client (shared by every process through Redis when configured)."""

    max_failures: int = Field(
        default=5, ge=1, description="Failed attempts allowed per client within the window before 429"
    )
    window: Duration = Field(
        default=timedelta(minutes=1),
        description="How long a failed attempt counts, from the attempt itself (a sliding window)",
    )
    redis_prefix: str = Field(
        default="c2c_auth_failures_",
        min_length=1,
        description="Redis key prefix of the failed-login counters (one sorted set per client, expiring with its "
        "window); services sharing a Redis and this prefix share their counters",
    )

    @field_validator("window")
    @classmethod
    def _positive_window(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("expected a window longer than 0 seconds")
        return value


class Auth(BaseModel):
    """Authentication of the admin tools."""

    secret: str | None = Field(default=None, description="Secret key for trivial authentication (not secure)")
    jwt: AuthJWT = Field(default_factory=AuthJWT)
    github: AuthGitHub = Field(default_factory=AuthGitHub)
    test: AuthTest = Field(default_factory=AuthTest)
    rate_limit: AuthRateLimit = Field(default_factory=AuthRateLimit)


class ToolsLogging(BaseModel):
    """Logging level tools."""

    redis_prefix: str = Field(default="c2c_logging_level_", description="Redis prefix for logging settings")
    application_module: str = Field(default="c2casgiutils", description="Application module name for logging")


class Tools(BaseModel):
    """Admin tools."""

    logging: ToolsLogging = Field(default_factory=ToolsLogging)


ProxyField = Literal["for", "proto", "host", "port", "prefix"]
_DEFAULT_PROXY_FIELDS: tuple[ProxyField, ...] = ("for", "proto", "host", "port")


class ProxyHeaders(BaseModel):
    """Forwarded headers handling."""

    type: Literal["none", "x-forwarded", "forwarded"] = Field(
        default="none",
        description="Proxy headers mode: 'none' disables host/proto rewriting, 'x-forwarded' trusts "
        "X-Forwarded-* headers, 'forwarded' trusts RFC7239 Forwarded header (and X-Forwarded-Prefix when prefix is "
        "in C2C__PROXY_HEADERS__FIELDS: Forwarded has no prefix)",
    )
    trusted_hosts: CommaList = Field(
        default_factory=lambda: ["127.0.0.1"],
        description="Trusted proxy client hosts/networks. Accepts comma-separated string or list "
        "(e.g. '127.0.0.1,10.0.0.0/8' or '*').",
    )
    fields: Annotated[list[ProxyField], NoDecode, BeforeValidator(_split_list)] = Field(
        default_factory=lambda: list(_DEFAULT_PROXY_FIELDS),
        description="Forwarded fields to apply, out of for, proto, host, port, prefix (comma-separated). List "
        "only the fields the proxy in front sets or clears: it passes on any other one as the client wrote it. "
        "X-Forwarded-Prefix counts only when prefix is listed, in either mode.",
    )
    hops: int = Field(
        default=1,
        ge=1,
        le=32,
        description="How many proxies in front append to the forwarded headers: each list (X-Forwarded-For, "
        "appended X-Forwarded-Host/Proto/Port, Forwarded elements) is read at most this many places from the "
        "right, so the left-most, client-written value never wins",
    )


class AccessLog(BaseModel):
    """uvicorn's access log."""

    skip_paths: CommaList = Field(
        default_factory=list,
        description="Paths whose successful (2xx) requests the access log leaves out, e.g. the probes "
        "'/c2c/health_checks?tags=liveness,/c2c/health_checks?tags=readiness'; an entry with a query string "
        "matches that query only, one without matches any query; failures (non-2xx) are always logged",
    )

    @field_validator("skip_paths")
    @classmethod
    def _paths(cls, value: list[str]) -> list[str]:
        for path in value:
            if not path.startswith("/") or any(char.isspace() for char in path):
                raise ValueError(f"expected paths starting with '/' and without spaces, got {path!r}")
        return value


class HealthChecks(BaseModel):
    """Health checks."""

    timeout: Duration = Field(default=timedelta(seconds=10), description="Default timeout of one health check")
    detailed_payloads: bool = Field(
        default=True,
        description="Show check payloads to unauthenticated callers; false gives them status codes only",
    )


class Broadcast(BaseModel):
    """Broadcast to every process."""

    secret: str | None = Field(
        default=None,
        min_length=1,
        description="Key of the HMAC signature of broadcast messages; when set, unsigned or wrongly "
        "signed messages are ignored (an empty value is refused: unset the variable to go unsigned)",
    )
    timeout: Duration = Field(
        default=timedelta(seconds=10), description="Default time to wait for the answers of a broadcast"
    )
    max_age: Duration = Field(
        default=timedelta(seconds=60),
        description="With a secret: a signed request older than this (or seen before) is ignored as a replay; "
        "keep it above the clock difference between hosts",
    )
    reconnect_delay_max: Duration = Field(
        default=timedelta(seconds=2),
        description="Longest wait between two attempts of the broadcast listener to reconnect to Redis",
    )


class RequestId(BaseModel):
    """Request id propagation."""

    header: str = Field(default="X-Request-ID", min_length=1, description="Header carrying the request id")
    max_length: int = Field(
        default=128,
        ge=8,
        le=1024,
        description="Longest request id accepted from a caller; a longer or malformed one is replaced by a new id",
    )


class Tracing(BaseModel):
    """W3C trace context: read from callers, passed on to the services called, in logs and errors."""

    enabled: bool = Field(
        default=True,
        description="Read and pass on the W3C trace context (traceparent, tracestate) and put trace ids in logs "
        "and errors; false keeps request ids only",
    )
    trust_inbound: Literal["always", "trusted_proxies", "never"] = Field(
        default="always",
        description="Whose trace context is continued: 'always' every caller's, 'trusted_proxies' only a "
        "request whose direct peer is in C2C__PROXY_HEADERS__TRUSTED_HOSTS, 'never' (every request starts a new "
        "trace). Export of spans is configured by the standard OTEL_* variables (docs/tracing.md)",
    )


class Versions(BaseModel):
    """What ``/c2c/versions`` reports as the service's own version."""

    service_distribution: str | None = Field(
        default=None, description="Python distribution name of the service, whose installed version is reported"
    )
    service_version: str | None = Field(
        default=None, description="Version of the service (wins over the version of service_distribution)"
    )
    git_hash: str | None = Field(
        default=None, description="Git commit of the service, e.g. set when the image is built"
    )
    git_directory: str = Field(default=".git", description="Git directory read for the commit when git_hash is not set")


MAX_DRAIN_DELAY = timedelta(minutes=10)


class Shutdown(BaseModel):
    """Availability of the instance and the drain on SIGTERM (see docs/operations.md)."""

    drain_delay: Duration = Field(
        default=timedelta(0),
        description="On SIGTERM, keep serving this long (answers with 'Connection: close', readiness failing) "
        "before uvicorn closes its sockets, so that load balancers and Kubernetes endpoints stop sending first; "
        "0 turns the drain off. Keep it below the orchestrator's grace period minus uvicorn's "
        "--timeout-graceful-shutdown",
    )
    availability_dir: str | None = Field(
        default=None,
        description="Directory where the workers of one instance share their availability state (starting, "
        "accepting, draining); default: the Prometheus multiprocess directory; without either each process "
        "keeps its own. One directory per instance, never shared between instances",
    )

    @field_validator("drain_delay")
    @classmethod
    def _bounded_drain_delay(cls, value: timedelta) -> timedelta:
        if value > MAX_DRAIN_DELAY:
            limit = MAX_DRAIN_DELAY.total_seconds()
            raise ValueError(f"expected at most {limit:g} seconds, got {value.total_seconds():g}")
        return value


# --------------------------------------------------------------------------------------------------
# Root
# --------------------------------------------------------------------------------------------------


class _SentryTagsSource(PydanticBaseSettingsSource):
    """Collect ``C2C__SENTRY__TAG_<NAME>=value`` variables into ``sentry.tags``."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        tags = {
            name[len(SENTRY_TAG_PREFIX) :].lower(): value
            for name, value in os.environ.items()
            if name.upper().startswith(SENTRY_TAG_PREFIX) and len(name) > len(SENTRY_TAG_PREFIX)
        }
        return {"sentry": {"tags": tags}} if tags else {}


class Settings(BaseSettings):
    """All the settings of c2casgiutils."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        case_sensitive=False,
        extra="ignore",
        validate_default=True,
    )

    redis: Redis = Field(default_factory=Redis)
    prometheus: Prometheus = Field(default_factory=Prometheus)
    sentry: Sentry = Field(default_factory=Sentry)
    auth: Auth = Field(default_factory=Auth)
    tools: Tools = Field(default_factory=Tools)
    proxy_headers: ProxyHeaders = Field(default_factory=ProxyHeaders)
    health_checks: HealthChecks = Field(default_factory=HealthChecks)
    broadcast: Broadcast = Field(default_factory=Broadcast)
    request_id: RequestId = Field(default_factory=RequestId)
    tracing: Tracing = Field(default_factory=Tracing)
    versions: Versions = Field(default_factory=Versions)
    shutdown: Shutdown = Field(default_factory=Shutdown)
    access_log: AccessLog = Field(default_factory=AccessLog)
    http: bool = Field(
        default=False,
        description="The application is running in HTTP mode to be used for development only (default: False)",
    )
    route_prefix: str = Field(
        default="/", description="Route prefix for the application, should start and end with a '/'"
    )

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as error:
            raise _without_secret_inputs(error, ("redis",)) from None

    @field_validator("route_prefix")
    @classmethod
    def _normalize_route_prefix(cls, value: str) -> str:
        prefix = value.strip()
        if re.search(r"[\s?#\\]", prefix):
            raise ValueError(f"expected a path such as '/' or '/tools/', got {value!r}")
        if not prefix.startswith("/"):
            prefix = "/" + prefix
        if not prefix.endswith("/"):
            prefix += "/"
        return re.sub("/{2,}", "/", prefix)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            _SentryTagsSource(settings_cls),
            dotenv_settings,
            file_secret_settings,
        )


class SettingsError(ValueError):
    """Invalid settings: the message names each environment variable and what it accepts."""


def env_name(location: tuple[int | str, ...]) -> str:
    """Name of the environment variable of a setting, from its location in the model."""
    parts = [str(part) for part in location if not isinstance(part, int)]
    return ENV_PREFIX + ENV_NESTED_DELIMITER.join(part.upper() for part in parts)


def format_validation_error(error: ValidationError) -> str:
    """Explain a validation error in terms of environment variables."""
    lines = []
    for detail in error.errors():
        location = tuple(detail["loc"])
        name = env_name(location) if location else f"{ENV_PREFIX}*"
        given = detail.get("input")
        given_text = f" (got {given!r})" if isinstance(given, str | int | float | bool) else ""
        message = str(detail["msg"]).removeprefix("Value error, ")
        lines.append(f"{name}{given_text}: {message}")
    return "Invalid c2casgiutils settings:\n  " + "\n  ".join(lines)


def load_settings(**overrides: Any) -> Settings:
    """Build the settings from the environment; raise SettingsError with a readable message."""
    try:
        return Settings(**overrides)
    except ValidationError as error:
        raise SettingsError(format_validation_error(error)) from None


settings: Settings = load_settings()
