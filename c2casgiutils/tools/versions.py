"""Admin tool: installed package versions and the service's version, from every process.

``GET /c2c/versions`` asks each process through broadcast (registered by :func:`startup`). Processes
whose versions differ from the majority are flagged, with the differing entries: after a partial
roll-out the operator sees which process still runs the old code.
"""

from __future__ import annotations

import collections
import importlib.metadata
import json
import platform
import re
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from c2casgiutils import audit, auth, config
from c2casgiutils._version import __version__
from c2casgiutils.tools._processes import MissingProcess, ProcessCollector
from c2casgiutils.tools._unavailable import UNAVAILABLE_RESPONSES, unavailable_as_503

router = APIRouter()

_HASH_RE = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")


def installed_packages() -> dict[str, str]:
    """Version of every installed distribution, by normalised name."""
    packages: dict[str, str] = {}
    for distribution in importlib.metadata.distributions():
        name = distribution.metadata["Name"]
        if name:
            packages[re.sub(r"[-_.]+", "-", name).lower()] = distribution.version
    return dict(sorted(packages.items()))


def read_git_hash(git_directory: Path) -> str | None:
    """The commit HEAD points to, read from the git files (no git binary needed); None if unknown."""
    try:
        head = (git_directory / "HEAD").read_text(encoding="utf-8").strip()
        if not head.startswith("ref: "):
            return head if _HASH_RE.fullmatch(head) else None
        ref = head.removeprefix("ref: ")
        ref_file = git_directory / ref
        if ref_file.is_file():
            value = ref_file.read_text(encoding="utf-8").strip()
            return value if _HASH_RE.fullmatch(value) else None
        packed = git_directory / "packed-refs"
        if packed.is_file():
            for line in packed.read_text(encoding="utf-8").splitlines():
                value, _, name = line.partition(" ")
                if name == ref and _HASH_RE.fullmatch(value):
                    return value
    except (OSError, UnicodeDecodeError):
        return None
    return None


def service_version() -> str | None:
    """The service's version from the settings, or from its installed distribution."""
    settings = config.settings.versions
    if settings.service_version:
        return settings.service_version
    if settings.service_distribution:
        try:
            return importlib.metadata.version(settings.service_distribution)
        except importlib.metadata.PackageNotFoundError:
            return None
    return None


async def _local_versions() -> dict[str, Any]:
    settings = config.settings.versions
    return {
        "service_version": service_version(),
        "git_hash": settings.git_hash or read_git_hash(Path(settings.git_directory)),
        "python": platform.python_version(),
        "c2casgiutils": __version__,
        "packages": installed_packages(),
    }


VERSIONS = ProcessCollector(_local_versions, channel="c2c_versions")


async def startup() -> None:
    """Register the collector with broadcast so every process answers; call after ``broadcast.startup``."""
    await VERSIONS.start()


def shutdown() -> None:
    """Forget the broadcast registration."""
    VERSIONS.stop()


class Difference(BaseModel):
    """A value of this process that differs from the majority of the processes."""

    this: str | None
    majority: str | None


class ProcessVersions(BaseModel):
    """Versions of one process."""

    hostname: str
    pid: int
    service_version: str | None
    git_hash: str | None
    python: str
    c2casgiutils: str
    packages: dict[str, str]
    differs: bool = Field(description="True when this process's versions differ from the majority")
    differences: dict[str, Difference] = Field(description="What differs, by package name (or field name)")


class VersionsResponse(BaseModel):
    """Versions grouped by process."""

    consistent: bool = Field(description="True when every process that answered runs the same versions")
    processes: list[ProcessVersions]
    missing: list[MissingProcess] = Field(description="Processes that did not answer in time or failed")
    broadcast: bool


def _flat(payload: dict[str, Any]) -> dict[str, str | None]:
    """One flat mapping per process, to compare processes entry by entry."""
    flat: dict[str, str | None] = {key: payload.get(key) for key in ("service_version", "git_hash", "python")}
    flat.update(payload.get("packages", {}))
    return flat


def flag_differences(payloads: list[dict[str, Any]]) -> list[dict[str, Difference]]:
    """For each payload, its entries that differ from the most common set of versions."""
    flats = [_flat(payload) for payload in payloads]
    if not flats:
        return []
    fingerprints = [json.dumps(flat, sort_keys=True) for flat in flats]
    majority = flats[fingerprints.index(collections.Counter(fingerprints).most_common(1)[0][0])]
    result = []
    for flat in flats:
        differences = {
            key: Difference(this=flat.get(key), majority=majority.get(key))
            for key in sorted(set(flat) | set(majority))
            if flat.get(key) != majority.get(key)
        }
        result.append(differences)
    return result


@router.get(
    "/versions",
    name="c2c_versions",
    responses=UNAVAILABLE_RESPONSES,
)
async def c2c_versions(request: Request, _: Annotated[None, Depends(auth.require_admin_access)]) -> VersionsResponse:
    """Package versions and service version of every process, flagging the odd ones."""
    with (
        audit.action(request, audit.Event.ADMIN_TOOL, tool="versions", path=request.url.path),
        unavailable_as_503("/c2c/versions"),
    ):
        collected = await VERSIONS.collect()
    differences = flag_differences([answer.payload for answer in collected.answers])
    processes = [
        ProcessVersions(
            hostname=answer.hostname, pid=answer.pid, differs=bool(diff), differences=diff, **answer.payload
        )
        for answer, diff in zip(collected.answers, differences, strict=True)
    ]
    return VersionsResponse(
        consistent=not any(process.differs for process in processes),
        processes=processes,
        missing=collected.missing,
        broadcast=collected.broadcast,
    )
