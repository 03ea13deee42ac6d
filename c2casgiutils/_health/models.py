"""The results of health checks, as served in the JSON body of the endpoint."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Result(BaseModel):
    """What one check returns: a HTTP-like status (200 healthy, 500 unhealthy) and free-form details."""

    status_code: int = Field(default=200, ge=100, le=599, description="200 when healthy, 500 (or 5xx) when not")
    payload: dict[str, Any] = Field(default_factory=dict, description="Details for the operator (JSON values)")


class EntityResult(BaseModel):
    """The result of one check in the report, with its identity and how long it took."""

    name: str = Field(description="Name of the check (its class name unless given)")
    tags: list[str] = Field(default_factory=list, description="Tags of the check")
    status_code: int = Field(default=200, description="Status of this check")
    payload: dict[str, Any] = Field(default_factory=dict, description="Details returned by the check")
    time_taken: float = Field(default=0.0, description="Duration of the check in seconds")


class GlobalResult(BaseModel):
    """The report: the worst status of the checks run, the total duration and each check's result."""

    status_code: int = Field(default=200, description="Worst (highest) status of the checks run; 200 if none")
    time_taken: float = Field(default=0.0, description="Duration of the whole report in seconds")
    entities: list[EntityResult] = Field(default_factory=list, description="One result per check run")
