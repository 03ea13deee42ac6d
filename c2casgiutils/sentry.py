"""Sentry initialisation from settings (and the ``SENTRY_DSN`` environment variable)."""

from __future__ import annotations

import logging
import os
from types import ModuleType
from typing import Any

from c2casgiutils import config
from c2casgiutils._optional import require

_LOGGER = logging.getLogger(__name__)


# sentry-sdk 3 replaced the EventScrubber (and its ``event_scrubber`` option) by ``data_collection``: our scrubbing
# guarantees are written against the 2.x interface, so a 3.x install is refused rather than left unscrubbed.
SUPPORTED_VERSIONS = ">=2.20,<3"


class UnsupportedSentryError(ImportError):
    """The installed sentry-sdk is outside the versions this package supports."""


def _check_version(sentry_sdk: ModuleType) -> None:
    version = str(getattr(sentry_sdk, "VERSION", ""))
    major = version.split(".", maxsplit=1)[0]
    if major.isdigit() and int(major) >= 3:
        raise UnsupportedSentryError(
            f"Sentry: sentry-sdk {version} is installed; c2casgiutils supports sentry-sdk{SUPPORTED_VERSIONS} "
            f"(3.x replaced the event scrubber this package configures): install it with `pip install "
            f"'sentry-sdk{SUPPORTED_VERSIONS}'`, or unset C2C__SENTRY__DSN and SENTRY_DSN to run without Sentry"
        )


def init_options() -> dict[str, Any] | None:
    """The keyword arguments for ``sentry_sdk.init``, or None when no DSN is configured."""
    sentry_settings = config.settings.sentry
    dsn = sentry_settings.dsn or os.environ.get("SENTRY_DSN")
    if not dsn:
        return None
    options = sentry_settings.model_dump(exclude={"tags", "event_scrubber"}, exclude_none=True)
    options["dsn"] = dsn
    _check_version(require("sentry_sdk", "sentry", "Sentry"))
    from c2casgiutils import _sentry_scrubber  # noqa: PLC0415 # imports sentry_sdk, an optional extra

    extra = [key.strip() for key in (sentry_settings.event_scrubber or "").split(",") if key.strip()]
    send_default_pii = bool(sentry_settings.send_default_pii)
    options["event_scrubber"] = _sentry_scrubber.Scrubber(extra, send_default_pii=send_default_pii)
    return options


def init() -> bool:
    """Initialise Sentry and apply the ``C2C__SENTRY__TAG_*`` tags; False when no DSN is configured."""
    options = init_options()
    if options is None:
        return False
    sentry_sdk = require("sentry_sdk", "sentry", "Sentry")
    sentry_sdk.init(**options)
    for tag, value in config.settings.sentry.tags.items():
        sentry_sdk.set_tag(tag, value)
    _LOGGER.info("Sentry is enabled, environment %s", options.get("environment"))
    return True
