"""The background tasks of a broadcast backend: kept referenced while they run, cancelled together when it stops."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


class BackgroundTasks:
    """Tasks spawned by the parts of one backend (listener, maintenance, handlers, deliveries)."""

    def __init__(self) -> None:
        # asyncio keeps only weak references to tasks: this set keeps them alive until they finish.
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coroutine: Coroutine[Any, Any, Any], name: str | None = None) -> asyncio.Task[Any]:
        """Run ``coroutine`` in the background."""
        task = asyncio.create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def cancel(self) -> list[asyncio.Task[Any]]:
        """Cancel every running task; the caller waits for them (bounded)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        return tasks

    def forget(self) -> None:
        """Drop the tasks of an event loop that is gone (nothing of it can be awaited)."""
        self._tasks.clear()
