"""The documentation describes the package as it is, for its users.

Rules, checked on every page below (CHANGELOG.md, whose job is the history, is not checked):

- no absolute path of a machine: a reader has no ``/work/...``, ``/root/...``, ``/tmp/...`` or
  ``/home/<name>/...``; write a path relative to the checkout, ``$HOME/...`` or ``"$(mktemp -d)"``;
- no link to a repository this code does not come from (``FOREIGN_REPOSITORIES``);
- no account of how or when the code was developed: no match of ``HISTORY_PATTERNS`` (case-insensitive). Say
  what the package does and what it measures now; a figure keeps the command that produced it and its date.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

# Absolute paths of the development machine (matched where a path starts, not inside a URL or a word).
MACHINE_PATHS = [
    r"(?<![\w.$~-])/work/",
    r"(?<![\w.$~-])/root/",
    r"(?<![\w.$~-])/tmp/",
    r"(?<![\w.$~-])/home/[\w.-]+/",
]
# Phrases that narrate development instead of describing the package (regular expressions, case-insensitive).
HISTORY_PATTERNS = [
    r"\b(?:first|second|third|last|previous|earlier|this|that|a later) session\b",
    r"\bpreviously measured\b",
    r"\bmeasured before\b",
    r"\b(?:before|after|since) (?:this|that|the) change\b",
    r"\b(?:before|after) the optimi[sz]ations?\b",
    r"\bbefore, (?:such|this|that|the|it)\b",  # "Before, such a header was ignored"
    r"\bwent from\b",  # "went from 0.81 to 0.83"
    r"\bearlier state\b",
    r"\bthe old implementation\b",
    r"\b(?:was|were) rewritten\b",
    r"\bwe (?:rewrote|changed|optimi[sz]ed)\b",
    r"\bin (?:the previous|this) commit\b",
    r"\bthis pull request\b",
]

# Repositories this code does not come from (the package index's older c2casgiutils lives there).
FOREIGN_REPOSITORIES = [r"github\.com/camptocamp/c2casgiutils"]

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted(
    [
        *ROOT.glob("docs/*.md"),
        ROOT / "README.md",
        ROOT / "bench" / "README.md",
        ROOT / "scaffold" / "README.md",
        ROOT / "scaffold" / "{{cookiecutter.project_slug}}" / "README.md",
    ]
)
PATTERNS = [re.compile(pattern) for pattern in [*MACHINE_PATHS, *FOREIGN_REPOSITORIES]] + [
    re.compile(pattern, re.IGNORECASE) for pattern in HISTORY_PATTERNS
]


def problems(text: str) -> list[str]:
    """``line N: the match`` for every rejected path or phrase of a page."""
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        for pattern in PATTERNS:
            for match in pattern.finditer(line):
                found.append(f"line {number}: {match.group(0)!r} in {line.strip()[:120]!r}")
    return found


@pytest.mark.parametrize("page", PAGES, ids=[page.relative_to(ROOT).as_posix() for page in PAGES])
def test_page_has_no_machine_path_and_no_development_history(page: Path) -> None:
    assert page.is_file()
    found = problems(page.read_text(encoding="utf-8"))
    assert found == [], f"{page.relative_to(ROOT)}:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "text",
    [
        "python3 -m venv /work/refvenv",
        "see /tmp/out",
        "the file in /root/.cache",
        "under /home/alice/src",
        "In an earlier session this took 3 s.",
        "Previously measured: 12 µs.",
        "Before this change the header cost 8 µs.",
        "Before the optimisations of the first session, the same command gave 3.3 µs.",
        "Before, such a header was ignored as a whole.",
        "cookiecutter https://github.com/camptocamp/c2casgiutils --directory scaffold",
        "In-process, `both` went from 0.81–0.83 (four runs) to 0.83.",
    ],
)
def test_rejected_text_is_found(text: str) -> None:
    assert problems(text)


@pytest.mark.parametrize(
    "text",
    [
        "python3 -m venv ../refvenv",
        "https://example.com/tmp/page and http://host/work/x",
        'cookiecutter --no-input -o "$(mktemp -d)" scaffold/',
        "PROMETHEUS_MULTIPROC_DIR=$HOME/metrics",
        "Browsers no longer act on it.",
        "the first chunk reaches the client before the last one is produced",
        "Measured on 2026-12-01 with `.venv/bin/python bench/bench_health.py`: 0.12 s.",
    ],
)
def test_accepted_text_passes(text: str) -> None:
    assert problems(text) == []
