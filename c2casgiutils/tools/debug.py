"""Admin tool: stacks of every thread and asyncio task, and memory use, from every process.

``GET /c2c/debug/stacks`` and ``GET /c2c/debug/memory`` ask each process through broadcast (registered by
:func:`startup`) and answer one entry per process.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import resource
import sys
import threading
import traceback
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from c2casgiutils import audit, auth
from c2casgiutils.tools._processes import MissingProcess, ProcessCollector
from c2casgiutils.tools._unavailable import UNAVAILABLE_RESPONSES, unavailable_as_503

router = APIRouter()


# ---------------------------------------------------------------------------------------------------
# What one process reports
# ---------------------------------------------------------------------------------------------------


class ThreadStack(BaseModel):
    """The stack of one thread."""

    name: str
    ident: int
    daemon: bool | None
    stack: list[str] = Field(description="Formatted frames, outermost first")


class TaskStack(BaseModel):
    """The stack of one asyncio task."""

    name: str
    coroutine: str
    done: bool
    stack: list[str] = Field(description="Formatted frames of the suspended coroutine chain")


def thread_stacks() -> list[ThreadStack]:
    """The current stack of every thread of this process."""
    threads = {thread.ident: thread for thread in threading.enumerate()}
    result = []
    for ident, frame in sys._current_frames().items():  # the documented way to get them
        thread = threads.get(ident)
        result.append(
            ThreadStack(
                name=thread.name if thread else f"thread-{ident}",
                ident=ident,
                daemon=thread.daemon if thread else None,
                stack=traceback.format_stack(frame),
            )
        )
    result.sort(key=lambda stack: stack.name)
    return result


def task_stacks() -> list[TaskStack]:
    """The stack of every asyncio task of the running loop."""
    result = []
    for task in asyncio.all_tasks():
        coroutine = task.get_coro()
        frames = task.get_stack()
        summary = traceback.StackSummary.extract((frame, frame.f_lineno) for frame in frames)
        result.append(
            TaskStack(
                name=task.get_name(),
                coroutine=getattr(coroutine, "__qualname__", repr(coroutine)),
                done=task.done(),
                stack=summary.format(),
            )
        )
    result.sort(key=lambda stack: stack.name)
    return result


async def _local_stacks() -> dict[str, Any]:
    return {
        "threads": [stack.model_dump() for stack in thread_stacks()],
        "tasks": [stack.model_dump() for stack in task_stacks()],
    }


def resident_memory() -> tuple[int, str]:
    """Resident set size in bytes, and where it was read (current on Linux, peak elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024, "VmRSS"
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is in bytes on macOS, kilobytes elsewhere.
    return (peak if sys.platform == "darwin" else peak * 1024), "ru_maxrss (peak)"


def _type_name(kind: type) -> str:
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def top_object_types(limit: int) -> tuple[int, list[dict[str, Any]]]:
    """Number of objects tracked by the garbage collector, and the ``limit`` most frequent types."""
    counts: collections.Counter[type] = collections.Counter(type(item) for item in gc.get_objects())
    top = [{"type": _type_name(kind), "count": count} for kind, count in counts.most_common(limit)]
    return sum(counts.values()), top


async def _local_memory(*, limit: int = 20) -> dict[str, Any]:
    rss, source = resident_memory()
    total, top = top_object_types(limit)
    return {"rss_bytes": rss, "rss_source": source, "gc_objects": total, "top_types": top}


STACKS = ProcessCollector(_local_stacks, channel="c2c_debug_stacks")
MEMORY = ProcessCollector(_local_memory, channel="c2c_debug_memory")


async def startup() -> None:
    """Register the collectors with broadcast so every process answers; call after ``broadcast.startup``."""
    await STACKS.start()
    await MEMORY.start()


def shutdown() -> None:
    """Forget the broadcast registrations."""
    STACKS.stop()
    MEMORY.stop()


# ---------------------------------------------------------------------------------------------------
# Endpoints
# ---------------------------------------------------------------------------------------------------


class ProcessStacks(BaseModel):
    """Stacks of one process."""

    hostname: str
    pid: int
    threads: list[ThreadStack]
    tasks: list[TaskStack]


class StacksResponse(BaseModel):
    """Stacks grouped by process."""

    processes: list[ProcessStacks]
    missing: list[MissingProcess] = Field(description="Processes that did not answer in time or failed")
    broadcast: bool = Field(description="False when broadcast was not started: only this process answered")


class TypeCount(BaseModel):
    """Number of live objects of one type."""

    type: str
    count: int


class ProcessMemory(BaseModel):
    """Memory of one process."""

    hostname: str
    pid: int
    rss_bytes: int
    rss_source: str
    gc_objects: int = Field(description="Objects tracked by the garbage collector")
    top_types: list[TypeCount]


class MemoryResponse(BaseModel):
    """Memory grouped by process."""

    processes: list[ProcessMemory]
    missing: list[MissingProcess] = Field(description="Processes that did not answer in time or failed")
    broadcast: bool


AdminAccess = Annotated[None, Depends(auth.require_admin_access)]


@router.get("/debug/stacks", name="c2c_debug_stacks", responses=UNAVAILABLE_RESPONSES)
async def c2c_debug_stacks(request: Request, _: AdminAccess) -> StacksResponse:
    """The stack of every thread and asyncio task of every process."""
    with (
        audit.action(request, audit.Event.ADMIN_TOOL, tool="debug_stacks", path=request.url.path),
        unavailable_as_503("/c2c/debug/stacks"),
    ):
        collected = await STACKS.collect()
    return StacksResponse(
        processes=[
            ProcessStacks(hostname=answer.hostname, pid=answer.pid, **answer.payload) for answer in collected.answers
        ],
        missing=collected.missing,
        broadcast=collected.broadcast,
    )


@router.get("/debug/memory", name="c2c_debug_memory", responses=UNAVAILABLE_RESPONSES)
async def c2c_debug_memory(
    request: Request,
    _: AdminAccess,
    limit: Annotated[int, Query(ge=1, le=500, description="Number of object types to list")] = 20,
) -> MemoryResponse:
    """Resident memory and the most frequent object types of every process."""
    with (
        audit.action(request, audit.Event.ADMIN_TOOL, tool="debug_memory", path=request.url.path),
        unavailable_as_503("/c2c/debug/memory"),
    ):
        collected = await MEMORY.collect(limit=limit)
    return MemoryResponse(
        processes=[
            ProcessMemory(hostname=answer.hostname, pid=answer.pid, **answer.payload) for answer in collected.answers
        ],
        missing=collected.missing,
        broadcast=collected.broadcast,
    )
