"""Helpers for scripts that are not web apps: logging configuration and broadcast start-up.

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args()
    await cli.init(args)
"""

from __future__ import annotations

import argparse
import logging
import logging.config
import os
from typing import Any

import yaml

_LOGGER = logging.getLogger(__name__)
_DEFAULT_ATTRIBUTE = "_c2c_default_logging_config"


class LoggingConfigError(SystemExit):
    """The logging configuration file is missing or broken (exits the script with the message)."""


def add_arguments(parser: argparse.ArgumentParser, default_logging_config: str | None = "logging.yaml") -> None:
    """Add ``--logging-config`` to a parser."""
    parser.add_argument(
        "--logging-config",
        default=default_logging_config,
        metavar="FILE",
        help=f"YAML logging configuration (dictConfig schema), default: {default_logging_config}",
    )
    parser.set_defaults(**{_DEFAULT_ATTRIBUTE: default_logging_config})


def configure_logging(path: str, required: bool = True) -> bool:
    """Apply a YAML logging configuration; False if it is optional and absent."""
    if not os.path.exists(path):
        if not required:
            return False
        raise LoggingConfigError(f"Logging configuration file not found: {path}")
    try:
        with open(path, encoding="utf-8") as file:
            content: Any = yaml.safe_load(file)
    except (OSError, yaml.YAMLError) as error:
        raise LoggingConfigError(f"Cannot read the logging configuration {path}: {error}") from error
    if not isinstance(content, dict):
        raise LoggingConfigError(f"The logging configuration {path} must be a YAML mapping (dictConfig schema)")
    content.setdefault("version", 1)
    try:
        logging.config.dictConfig(content)
    except (ValueError, TypeError, AttributeError, ImportError) as error:
        raise LoggingConfigError(f"Invalid logging configuration {path}: {error}") from error
    return True


async def init(args: argparse.Namespace) -> None:
    """Configure logging from ``--logging-config`` and start the broadcast backend.

    An explicitly given file that is missing or broken stops the script with a clear message; the default
    file may be absent, in which case a basic configuration is used.
    """
    path = getattr(args, "logging_config", None)
    default = getattr(args, _DEFAULT_ATTRIBUTE, None)
    configured = False
    if path:
        configured = configure_logging(path, required=path != default)
    if not configured:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)-5s %(name)s %(message)s")
        if path:
            _LOGGER.info("No logging configuration at %s: using the basic configuration", path)

    from c2casgiutils import broadcast, log_levels  # noqa: PLC0415 - keep `import c2casgiutils.cli` light

    await broadcast.startup()
    await log_levels.startup()
