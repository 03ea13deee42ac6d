"""Typed models of the authentication: who is logged in, how, and what a route requires."""

from __future__ import annotations

import enum

from pydantic import BaseModel, Field

from c2casgiutils.config import GitHubAccessType


class AuthenticationType(enum.Enum):
    """The authentication configured by the settings (one per service)."""

    NONE = 0
    """No authentication configured: the admin tools are closed."""
    SECRET = 1
    """A shared secret (``C2C__AUTH__SECRET``)."""
    GITHUB = 2
    """GitHub OAuth and a permission on a repository."""
    TEST = 3
    """Every request is logged in as the test user (development only)."""


class AuthMethod(enum.StrEnum):
    """How the current request was authenticated."""

    NONE = "none"
    SECRET = "secret"  # noqa: S105 # the name of the method, not a secret
    GITHUB_OAUTH = "github_oauth"
    GITHUB_BEARER = "github_bearer"
    TEST = "test"


class AuthConfig(BaseModel):
    """What a route requires from a GitHub user: a permission on a repository.

    ``github_access_type`` is the permission needed; the ``*_read_only`` / ``*_read_write`` / ``*_admin``
    fields are kept for compatibility, the strongest one given wins. Unset fields fall back to the settings
    (``C2C__AUTH__GITHUB__REPOSITORY`` and ``C2C__AUTH__GITHUB__ACCESS_TYPE``). Users authenticated by the
    shared secret or the test user have every access.
    """

    github_repository: str | None = Field(default=None, description="Repository as 'owner/name'")
    github_access_type: GitHubAccessType | None = Field(default=None, description="Permission needed")
    github_access_type_read_only: GitHubAccessType | None = None
    github_access_type_read_write: GitHubAccessType | None = None
    github_access_type_admin: GitHubAccessType | None = None

    def required_access_type(self, default: GitHubAccessType) -> GitHubAccessType:
        """The permission this configuration asks for."""
        for value in (
            self.github_access_type,
            self.github_access_type_admin,
            self.github_access_type_read_write,
            self.github_access_type_read_only,
        ):
            if value is not None:
                return value
        return default


class UserInfo(BaseModel):
    """The authenticated user. ``token`` (the GitHub access token) is never serialised."""

    login: str = ""
    display_name: str = ""
    url: str = ""
    token: str = Field(default="", exclude=True, repr=False)


class AuthInfo(BaseModel):
    """Result of the authentication of one request."""

    is_logged_in: bool
    user: UserInfo = Field(default_factory=UserInfo)
    type: AuthMethod = AuthMethod.NONE


class AuthStatus(BaseModel):
    """Answer of ``/c2c/auth/status``: never contains a token or a secret."""

    is_logged_in: bool = Field(description="Whether the request carries a valid login")
    type: AuthMethod = Field(description="How the request is authenticated")
    user: UserInfo = Field(description="The user, for GitHub and the test user")
    is_admin: bool = Field(description="Whether the request has access to the admin tools")
    auth_type: str = Field(description="The configured authentication: none, secret, github or test")
    methods: list[str] = Field(description="The login methods available: secret, github")
    error: str | None = Field(default=None, description="Why the admin access could not be checked")
