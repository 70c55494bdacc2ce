"""The OpenAPI document says what the API really answers: every 4xx and 5xx is OpenAI's error
shape (`{"error": {"message", "type", "code", "param"}}`), not Litestar's default error body."""

from __future__ import annotations

from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import (
    OpenAPI,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Reference,
    Schema,
)

_NULLABLE_STRING = Schema(type=[OpenAPIType.STRING, OpenAPIType.NULL])

ERROR_SCHEMA = Schema(
    type=OpenAPIType.OBJECT,
    required=["error"],
    properties={
        "error": Schema(
            type=OpenAPIType.OBJECT,
            required=["message", "type", "code", "param"],
            properties={
                "message": Schema(type=OpenAPIType.STRING),
                "type": Schema(type=OpenAPIType.STRING),
                "code": _NULLABLE_STRING,
                "param": _NULLABLE_STRING,
            },
        )
    },
)


def _error_response(description: str) -> OpenAPIResponse:
    return OpenAPIResponse(
        description=description,
        content={
            "application/json": OpenAPIMediaType(schema=Reference("#/components/schemas/Error"))
        },
    )


def _declared(response: object) -> bool:
    """A response a handler declared with a schema of ours (e.g. /readyz's 503), which is what
    it answers; Litestar's generated error responses carry inline schemas."""
    content = getattr(response, "content", None) or {}
    return any(isinstance(media.schema, Reference) for media in content.values())


def document_errors(openapi: OpenAPI) -> None:
    """Point every operation's error responses at the one `Error` schema."""
    if openapi.components.schemas is None:
        openapi.components.schemas = {}
    openapi.components.schemas["Error"] = ERROR_SCHEMA
    for path_item in (openapi.paths or {}).values():
        for operation in (
            path_item.get,
            path_item.post,
            path_item.put,
            path_item.patch,
            path_item.delete,
        ):
            if operation is None:
                continue
            responses = dict(operation.responses or {})
            for status, response in list(responses.items()):
                if status[:1] in ("4", "5") and not _declared(response):
                    description = getattr(response, "description", None) or "An error"
                    responses[status] = _error_response(description)
            responses.setdefault("4XX", _error_response("The request was refused"))
            responses.setdefault("5XX", _error_response("A backend is unavailable, or we failed"))
            operation.responses = responses


BINARY = ResponseSpec(
    data_container=bytes,
    media_type="*/*",
    description="The file's bytes, with its own content type",
    generate_examples=False,
)

AUDIO = ResponseSpec(
    data_container=bytes,
    media_type="audio/*",
    description="The audio: audio/mpeg, audio/wav, audio/ogg (opus) or audio/flac",
    generate_examples=False,
)
