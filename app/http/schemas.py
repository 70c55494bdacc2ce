"""What every request and response schema builds on: requests refuse unknown fields and NUL
characters at the edge; responses hold exactly their documented fields. Each domain keeps its
own shapes in its `schemas.py`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator

MAX_DEPTH = 16
"""How deeply a request's values may nest: no body of ours needs more than 4 levels, and a
deeper one would cost a recursive walk (ours, pydantic's, the JSON encoder's) its stack."""


def _refused_path(value: Any, path: str) -> tuple[str, str] | None:
    """Where in `value` a NUL character sits (PostgreSQL cannot store one in text) or values
    nest deeper than MAX_DEPTH, with what is wrong there; None if nothing is. Walked with a
    stack of its own, not by recursion, so no depth can overflow it."""
    todo: list[tuple[Any, str, int]] = [(value, path, 0)]
    while todo:
        item, where, depth = todo.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return where, "contains a NUL character, which is not allowed"
        elif isinstance(item, dict | list | tuple):
            if depth >= MAX_DEPTH:
                return where, f"nests deeper than {MAX_DEPTH} levels"
            if isinstance(item, dict):
                for key, child in item.items():
                    if isinstance(key, str) and "\x00" in key:
                        return where, "contains a NUL character, which is not allowed"
                    todo.append((child, f"{where}.{key}", depth + 1))
            else:
                todo.extend((child, f"{where}[{i}]", depth + 1) for i, child in enumerate(item))
    return None


class RequestModel(BaseModel):
    """A request body: unknown fields, NUL characters (in any string, at any depth) and values
    nested deeper than MAX_DEPTH are refused at the edge, so none reaches the database."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _no_nul(cls, value: Any, info: Any) -> Any:
        refused = _refused_path(value, info.field_name)
        if refused:
            raise ValueError(" ".join(refused))
        return value


class ResponseModel(BaseModel):
    """A response body: exactly the documented fields (a field a handler adds without declaring
    it fails loudly, so the OpenAPI document cannot drift from the answers)."""

    model_config = ConfigDict(extra="forbid")


class ListModel(ResponseModel):
    object: Literal["list"] = "list"
