"""Which authentication the settings configure, and the start-up check that refuses unsafe ones."""

from __future__ import annotations

import importlib.util
import logging

from c2casgiutils import config
from c2casgiutils.auth._models import AuthenticationType

_LOGGER = logging.getLogger(__name__)

MIN_JWT_SECRET_BYTES = 32
MIN_RECOMMENDED_SECRET_LENGTH = 16

HOW_TO_OPEN = (
    "set C2C__AUTH__SECRET (shared secret), or C2C__AUTH__GITHUB__REPOSITORY, C2C__AUTH__GITHUB__CLIENT_ID, "
    "C2C__AUTH__GITHUB__CLIENT_SECRET and C2C__AUTH__JWT__SECRET (GitHub login), or "
    "C2C__AUTH__TEST__USERNAME (development only)"
)


def secret_enabled() -> bool:
    """Whether the shared secret is configured."""
    secret = config.settings.auth.secret
    return secret is not None and secret != ""


def github_enabled() -> bool:
    """Whether GitHub OAuth is fully configured (application and repository)."""
    github = config.settings.auth.github
    return bool(github.client_id and github.client_secret and github.repository)


def test_user_enabled() -> bool:
    """Whether the test user is configured."""
    return bool(config.settings.auth.test.username)


def auth_type() -> AuthenticationType:
    """The configured authentication; the secret wins over the test user, which wins over GitHub."""
    if secret_enabled():
        return AuthenticationType.SECRET
    if test_user_enabled():
        return AuthenticationType.TEST
    if github_enabled():
        return AuthenticationType.GITHUB
    return AuthenticationType.NONE


def is_enabled() -> bool:
    """Whether any authentication is configured (otherwise the admin tools are closed)."""
    return auth_type() != AuthenticationType.NONE


def check_settings() -> None:
    """Stop start-up on an unsafe or incoherent authentication configuration; warn on risky ones."""
    auth = config.settings.auth
    errors: list[str] = []

    if auth.secret is not None and auth.secret == "":
        errors.append("C2C__AUTH__SECRET is set but empty: give it a long random value or unset it")

    github = auth.github
    github_parts = {
        "C2C__AUTH__GITHUB__CLIENT_ID": github.client_id,
        "C2C__AUTH__GITHUB__CLIENT_SECRET": github.client_secret,
        "C2C__AUTH__GITHUB__REPOSITORY": github.repository,
    }
    given = [name for name, value in github_parts.items() if value]
    missing = [name for name, value in github_parts.items() if not value]
    if given and missing:
        errors.append(
            f"GitHub authentication is partly configured ({', '.join(given)} set): also set {', '.join(missing)}"
        )
    if github_enabled():
        jwt_secret = auth.jwt.secret
        if not jwt_secret:
            errors.append(
                "GitHub authentication needs C2C__AUTH__JWT__SECRET (at least "
                f"{MIN_JWT_SECRET_BYTES} bytes, e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`)"
            )
        elif len(jwt_secret.encode()) < MIN_JWT_SECRET_BYTES:
            errors.append(
                f"C2C__AUTH__JWT__SECRET is {len(jwt_secret.encode())} bytes long: GitHub authentication needs "
                f"at least {MIN_JWT_SECRET_BYTES} bytes"
            )
        if importlib.util.find_spec("cryptography") is None:
            errors.append(
                "GitHub authentication encrypts the GitHub tokens in its cookie and needs the Python package "
                "'cryptography': `pip install cryptography`"
            )

    cookie = auth.jwt.cookie
    if cookie.same_site == "none" and not cookie.secure:
        errors.append(
            "C2C__AUTH__JWT__COOKIE__SAME_SITE=none needs C2C__AUTH__JWT__COOKIE__SECURE=true "
            "(browsers drop such cookies otherwise)"
        )
    if cookie.path is not None and not cookie.path.startswith("/"):
        errors.append(f"C2C__AUTH__JWT__COOKIE__PATH must start with '/', got {cookie.path!r}")

    if errors:
        raise config.SettingsError("Unsafe authentication settings:\n  " + "\n  ".join(errors))

    _warn_risky()


def _warn_risky() -> None:
    auth = config.settings.auth
    kind = auth_type()
    if kind == AuthenticationType.TEST:
        _LOGGER.warning(
            "C2C__AUTH__TEST__USERNAME is set: EVERY request is logged in as the admin %r. "
            "Never use this outside development.",
            auth.test.username,
        )
    elif test_user_enabled():
        _LOGGER.warning("C2C__AUTH__TEST__USERNAME is ignored because C2C__AUTH__SECRET is set")
    if kind == AuthenticationType.SECRET:
        assert auth.secret is not None
        _LOGGER.info(
            "Admin tools use the shared secret; GitHub login is recommended because access is personal "
            "and can be revoked"
        )
        if len(auth.secret) < MIN_RECOMMENDED_SECRET_LENGTH:
            _LOGGER.warning(
                "C2C__AUTH__SECRET is shorter than %s characters: use a long random value",
                MIN_RECOMMENDED_SECRET_LENGTH,
            )
    if kind == AuthenticationType.NONE:
        _LOGGER.info("No authentication configured: the admin tools are closed (%s)", HOW_TO_OPEN)
    if auth.jwt.cookie.secure and config.settings.http and kind != AuthenticationType.NONE:
        _LOGGER.warning(
            "C2C__HTTP is true but the auth cookie is Secure: browsers only send it over HTTPS "
            "(set C2C__AUTH__JWT__COOKIE__SECURE=false for plain-HTTP development)"
        )
