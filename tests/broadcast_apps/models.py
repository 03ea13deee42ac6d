"""Typed functions used by the in-process broadcast tests (importable, so the default channel is stable)."""

from __future__ import annotations

from pydantic import BaseModel


class Point(BaseModel):
    x: int
    y: int


class Echo(BaseModel):
    points: list[Point]
    total: int


async def echo_points(point: Point, scale: int = 1) -> Echo:
    scaled = Point(x=point.x * scale, y=point.y * scale)
    return Echo(points=[scaled], total=scaled.x + scaled.y)
