"""What every request and response schema builds on: requests refuse unknown fields and NUL
characters at the edge; responses hold exactly their documented fields. Each domain keeps its
own shapes in its `schemas.py`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator


def _nul_path(value: Any, path: str) -> str | None:
    """Where in `value` a NUL character sits (PostgreSQL cannot store one in text), or None."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            where = _nul_path(key, path) or _nul_path(item, f"{path}.{key}")
            if where:
                return where
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            where = _nul_path(item, f"{path}[{index}]")
            if where:
                return where
    return None


class RequestModel(BaseModel):
    """A request body: unknown fields and NUL characters (in any string, at any depth) are
    refused at the edge, so neither reaches the database."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _no_nul(cls, value: Any, info: Any) -> Any:
        where = _nul_path(value, info.field_name)
        if where:
            raise ValueError(f"{where} contains a NUL character, which is not allowed")
        return value


class ResponseModel(BaseModel):
    """A response body: exactly the documented fields (a field a handler adds without declaring
    it fails loudly, so the OpenAPI document cannot drift from the answers)."""

    model_config = ConfigDict(extra="forbid")


class ListModel(ResponseModel):
    object: Literal["list"] = "list"
