"""Settings of {{ cookiecutter.project_slug }}, read from ``{{ cookiecutter.project_slug | upper }}__``-prefixed environment variables.

Nested values use ``__``: ``{{ cookiecutter.project_slug | upper }}__CORS__ALLOW_ORIGINS``. The settings of c2casgiutils
(Redis, Prometheus, Sentry, proxy headers...) are separate and use the ``C2C__`` prefix.
"""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "{{ cookiecutter.project_slug | upper }}__"
ENV_NESTED_DELIMITER = "__"


def _split_comma_list(value: Any) -> Any:
    """Read 'a,b,c' from the environment as a list."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


CommaList = Annotated[list[str], NoDecode, BeforeValidator(_split_comma_list)]
{%- if cookiecutter.database %}


class Database(BaseModel):
    """The database, reached through SQLAlchemy's asyncio extension."""

    url: str = Field(
        default="sqlite+aiosqlite:///./{{ cookiecutter.project_slug }}.db",
        description="SQLAlchemy async URL, e.g. postgresql+asyncpg://user:password@host/name",
    )
    echo: bool = Field(default=False, description="Log every SQL statement")
    alembic_config: str = Field(
        default="alembic.ini", description="Alembic configuration, used by the migrations health check"
    )
{%- endif %}


class Cors(BaseModel):
    """Cross-origin requests; no origin is allowed by default."""

    allow_origins: CommaList = Field(default_factory=list, description="Allowed origins, comma-separated")
    allow_credentials: bool = Field(default=False, description="Allow cookies and authorization headers")
    allow_methods: CommaList = Field(default_factory=lambda: ["GET"], description="Allowed methods")
    allow_headers: CommaList = Field(default_factory=list, description="Allowed request headers")

    @model_validator(mode="after")
    def _no_wildcard_with_credentials(self) -> "Cors":
        # Browsers refuse credentials with '*', and echoing every origin instead would open the API to any site.
        if self.allow_credentials and "*" in self.allow_origins:
            raise ValueError("'*' origins cannot be combined with credentials: list the allowed origins")
        return self


class Settings(BaseSettings):
    """All the settings of {{ cookiecutter.project_slug }}."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        case_sensitive=False,
        extra="ignore",
    )

    allowed_hosts: CommaList = Field(
        default_factory=lambda: ["*"], description="Host headers accepted (TrustedHostMiddleware)"
    )
    log_format: Literal["text", "json"] = Field(default="text", description="Log format of logging.yaml")
    cors: Cors = Field(default_factory=Cors)
{%- if cookiecutter.database %}
    database: Database = Field(default_factory=Database)
{%- endif %}


class SettingsError(ValueError):
    """Invalid settings; the message names the environment variables."""


def load_settings(**overrides: Any) -> Settings:
    """Read the settings from the environment, with a message that names each wrong variable."""
    try:
        return Settings(**overrides)
    except ValidationError as error:
        lines = []
        for detail in error.errors():
            name = ENV_PREFIX + ENV_NESTED_DELIMITER.join(str(part).upper() for part in detail["loc"])
            lines.append(f"{name}: {str(detail['msg']).removeprefix('Value error, ')}")
        raise SettingsError("Invalid settings:\n  " + "\n  ".join(lines)) from None


settings = load_settings()
