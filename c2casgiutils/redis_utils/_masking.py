"""No credential in any text about Redis: the URL masked, error messages scrubbed of every configured secret.

Redis is named in logs, errors and payloads through :func:`describe` (the URL masked by :func:`mask_url`);
Redis error texts go through :func:`safe_error` (one call: ``redis_utils.safe_error(error)``), which also
removes every configured credential (the URL's password, ``password`` options of the data connections and of
the Sentinels), also percent-encoded.
"""

from __future__ import annotations

from c2casgiutils import _redis_options, _sensitive, config

mask_url = _sensitive.mask_url
"""The one masking function for Redis URLs (password of the user-info and ``password=`` query values)."""


def safe_text(text: str) -> str:
    """A text (an error message) with the configured Redis URL masked and every configured credential removed."""
    redis_settings = config.settings.redis
    if redis_settings.url and redis_settings.url in text:
        text = text.replace(redis_settings.url, mask_url(redis_settings.url))
    return _sensitive.scrub(text, _redis_options.secrets(redis_settings))


def safe_error(error: BaseException) -> str:
    """``Type: message`` of an exception, fit for a log line or a response (see :func:`safe_text`)."""
    message = str(error)
    return safe_text(f"{type(error).__name__}: {message}" if message else type(error).__name__)


def describe() -> str:
    """A description of the configured Redis, without credentials."""
    redis_settings = config.settings.redis
    if redis_settings.sentinels:
        return f"sentinel {redis_settings.sentinels} service {redis_settings.servicename}"
    if redis_settings.url:
        return mask_url(redis_settings.url)
    return "not configured"
