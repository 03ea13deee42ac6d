"""The Sentry event scrubber: sentry-sdk's own, made to find a denylisted key however it is spelled or stored."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable

from sentry_sdk.scrubber import DEFAULT_DENYLIST, DEFAULT_PII_DENYLIST, EventScrubber

_SEPARATOR = re.compile(r"[-_]")
# What sentry-sdk writes in place of a scrubbed value (its AnnotatedValue, whose module moved between releases,
# adds a remark for Sentry's interface: the value alone is enough here).
FILTERED = "[Filtered]"


def spellings(key: str) -> list[str]:
    """``key`` in lower case, with each ``-`` or ``_`` of it written both ways.

    sentry-sdk compares a key in lower case with its lower-cased denylist; its newer releases also read ``-`` as
    ``_``, older ones (2.20 among them) take ``x-token`` and ``x_token`` for different keys. Listing every
    spelling gives the same guarantee on every supported version: 2**n entries for a key with n separators, a
    handful in practice.
    """
    parts = _SEPARATOR.split(key.lower())
    return [
        "".join(part + separator for part, separator in zip(parts, (*separators, ""), strict=True))
        for separators in itertools.product("-_", repeat=len(parts) - 1)
    ]


def denylist(keys: Iterable[str]) -> list[str]:
    """Every spelling of ``keys`` (see :func:`spellings`), without repeats."""
    return list(dict.fromkeys(spelling for key in keys for spelling in spellings(key)))


def _pair_name(text: str) -> str:
    """The name of a ``[name, value]`` pair: the ASGI scope's header names are bytes, kept as ``"b'name'"``."""
    if len(text) >= 3 and text.startswith(("b'", 'b"')) and text[-1] == text[1]:
        text = text[2:-1]
    return text.lower()


class Scrubber(EventScrubber):
    """sentry-sdk's scrubber over its default denylist plus ``extra_keys``, with three more guarantees.

    * A key matches in any letter case and with ``-`` or ``_`` (:func:`denylist`), on every sentry-sdk version.
    * Nested dictionaries are scrubbed too (an extra holding a configuration, a local variable holding a dict).
    * ``[name, value]`` pairs are scrubbed like dictionary items: the local variables of the frames of an ASGI
      application hold the scope, whose ``headers`` is such a list, and they are sent by default
      (``include_local_variables``); sentry-sdk only scrubs dictionaries.

    Personal data (``x_forwarded_for``, ``ip_address``, ...) is scrubbed unless ``send_default_pii`` is set, as by
    sentry-sdk's own scrubber.
    """

    def __init__(self, extra_keys: Iterable[str] = (), send_default_pii: bool = False) -> None:
        keys = denylist([*DEFAULT_DENYLIST, *extra_keys])
        personal = [] if send_default_pii else denylist(DEFAULT_PII_DENYLIST)
        super().__init__(denylist=keys, recursive=True, send_default_pii=send_default_pii, pii_denylist=personal)
        self._pair_names = frozenset([*keys, *personal])

    def scrub_list(self, lst: object) -> None:
        """Scrub the ``[name, value]`` pairs of the list, then what sentry-sdk scrubs in it (its dictionaries)."""
        if isinstance(lst, list):
            for item in lst:
                if (
                    isinstance(item, list)
                    and len(item) == 2
                    and isinstance(item[0], str)
                    and _pair_name(item[0]) in self._pair_names
                ):
                    item[1] = FILTERED
        super().scrub_list(lst)
