"""Lazy imports of optional integrations, with an error that names the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingExtraError(ImportError):
    """An optional integration is used without its extra installed."""


def require(module: str, extra: str, feature: str | None = None) -> ModuleType:
    """Import ``module`` or raise MissingExtraError telling which extra brings it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        what = feature or module
        raise MissingExtraError(
            f"{what} needs the Python package {module.split('.', maxsplit=1)[0]!r}, which is not installed: "
            f"install it with `pip install 'c2casgiutils[{extra}]'`"
        ) from error
