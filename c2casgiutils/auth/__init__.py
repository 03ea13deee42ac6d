"""Authentication of the admin tools and of the service's own routes.

Configured by ``C2C__AUTH__*`` (see docs/auth.md): a shared secret, GitHub OAuth with a permission on a
repository, or a test user; with none of them the admin tools are closed (403).

Use it in a service::

    from c2casgiutils import auth

    @app.get("/admin-only", dependencies=[Depends(auth.require_admin_access)])
    async def admin_only() -> dict[str, str]: ...

    @app.get("/writers")
    async def writers(_: Annotated[None, Depends(auth.require_access(auth.AuthConfig(github_access_type="push")))]): ...

    @app.get("/maybe")
    async def maybe(context: Annotated[auth.AccessContext, Depends(auth.get_access_context)]) -> bool:
        return await context.check_read_write_access()
"""

from c2casgiutils.auth._access import (
    AccessContext,
    admin_config,
    auth_required,
    get_access_context,
    get_auth,
    has_admin_access,
    read_only_config,
    read_write_config,
    require_access,
    require_admin_access,
    require_read_only_access,
    require_read_write_access,
)
from c2casgiutils.auth._came_from import validate_came_from
from c2casgiutils.auth._configuration import auth_type, check_settings, github_enabled, is_enabled, secret_enabled
from c2casgiutils.auth._github import (
    GitHubError,
    GitHubOAuthError,
    GitHubRateLimitError,
    GitHubTokenRejectedError,
    GitHubUnavailableError,
)
from c2casgiutils.auth._models import AuthConfig, AuthenticationType, AuthInfo, AuthMethod, AuthStatus, UserInfo
from c2casgiutils.auth._routes import router


def reset_state() -> None:
    """Forget the in-process caches and failure counters (tests, or after changing the settings)."""
    from c2casgiutils.auth import _github, _rate_limit  # noqa: PLC0415

    _github.reset_caches()
    _rate_limit.reset()


__all__ = [
    "AccessContext",
    "AuthConfig",
    "AuthInfo",
    "AuthMethod",
    "AuthStatus",
    "AuthenticationType",
    "GitHubError",
    "GitHubOAuthError",
    "GitHubRateLimitError",
    "GitHubTokenRejectedError",
    "GitHubUnavailableError",
    "UserInfo",
    "admin_config",
    "auth_required",
    "auth_type",
    "check_settings",
    "get_access_context",
    "get_auth",
    "github_enabled",
    "has_admin_access",
    "is_enabled",
    "read_only_config",
    "read_write_config",
    "require_access",
    "require_admin_access",
    "require_read_only_access",
    "require_read_write_access",
    "reset_state",
    "router",
    "secret_enabled",
    "validate_came_from",
]
