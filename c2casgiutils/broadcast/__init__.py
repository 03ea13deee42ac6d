"""Broadcast to every process (filled in by the broadcast issue)."""


async def startup() -> None:
    """Start the broadcast backend."""


async def shutdown() -> None:
    """Stop the broadcast backend."""
