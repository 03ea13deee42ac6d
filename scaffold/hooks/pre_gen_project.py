"""Refuse answers that would generate a broken project, before anything is written.

The slug names the directory, the Python package and the settings prefix (``<SLUG>__``), so it must be a
lowercase Python identifier that shadows nothing the service imports.
"""

from __future__ import annotations  # the hook runs on the Python of cookiecutter, maybe older than 3.10

import keyword
import re
import sys

# tojson: any answer, even one with quotes, renders as a valid Python string literal.
SLUG = {{ cookiecutter.project_slug | tojson }}
DESCRIPTION = {{ cookiecutter.project_description | tojson }}
REQUIREMENT = {{ cookiecutter.c2casgiutils_requirement | tojson }}

# Lowercase words separated by single underscores: "__" is the nested-settings delimiter.
SLUG_PATTERN = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")
MAX_SLUG_LENGTH = 40
# Packages the generated service imports: a project of the same name would shadow them.
TAKEN_NAMES = {
    "aiosqlite",
    "alembic",
    "asyncpg",
    "c2casgiutils",
    "fastapi",
    "httpx",
    "jwt",
    "prometheus_client",
    "prometheus_fastapi_instrumentator",
    "pydantic",
    "pydantic_settings",
    "pytest",
    "redis",
    "sentry_sdk",
    "sqlalchemy",
    "starlette",
    "tests",
    "uvicorn",
    "yaml",
}


def slug_problem(slug: str) -> str | None:
    """Why the slug cannot be used, or None when it is fine."""
    if not SLUG_PATTERN.fullmatch(slug):
        return (
            "it must start with a lowercase letter and contain only lowercase letters, digits and single "
            "underscores between words (no leading, trailing or double underscore), e.g. 'my_service'"
        )
    if len(slug) > MAX_SLUG_LENGTH:
        return f"it is {len(slug)} characters long, the limit is {MAX_SLUG_LENGTH}"
    if keyword.iskeyword(slug) or slug in getattr(keyword, "softkwlist", ()):
        return "it is a Python keyword"
    if slug in getattr(sys, "stdlib_module_names", ()):
        return "it is the name of a module of the Python standard library, which it would shadow"
    if slug in TAKEN_NAMES:
        return "it is the name of a package the generated service uses, which it would shadow"
    return None


def description_problem(description: str) -> str | None:
    """Why the description cannot be used, or None when it is fine."""
    if not description.strip():
        return "it is empty"
    if any(character in description for character in '"\\') or any(ord(c) < 32 for c in description):
        return "it must be one line without double quotes or backslashes (it goes into Python, TOML and YAML)"
    return None


# "c2casgiutils", optional extras, then a version specifier or "@ <url>" (PEP 508, as pip reads it).
REQUIREMENT_PATTERN = re.compile(r"c2casgiutils\s*(?:\[[A-Za-z0-9_,\s-]*\])?\s*(?:(?:[<>=!~]=?|===).*|@\s*\S+)?")


def requirement_problem(requirement: str) -> str | None:
    """Why the c2casgiutils requirement cannot be used, or None when it is fine."""
    if any(character in requirement for character in '"\\') or any(ord(c) < 32 for c in requirement):
        return "it must be one line without double quotes or backslashes (it goes into pyproject.toml)"
    if not REQUIREMENT_PATTERN.fullmatch(requirement.strip()):
        return (
            "expected a requirement of the package c2casgiutils, e.g. 'c2casgiutils[all]>=1.0.0' or "
            "'c2casgiutils[all] @ file:///path/to/c2casgiutils-1.0.0-py3-none-any.whl'"
        )
    return None


def main() -> int:
    problems = []
    slug_error = slug_problem(SLUG)
    if slug_error:
        problems.append(f"Invalid project_slug {SLUG!r}: {slug_error}.")
    description_error = description_problem(DESCRIPTION)
    if description_error:
        problems.append(f"Invalid project_description {DESCRIPTION!r}: {description_error}.")
    requirement_error = requirement_problem(REQUIREMENT)
    if requirement_error:
        problems.append(f"Invalid c2casgiutils_requirement {REQUIREMENT!r}: {requirement_error}.")
    for problem in problems:
        print(f"ERROR: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
