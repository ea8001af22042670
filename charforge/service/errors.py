"""Tool and charforge error codes -> HTTP statuses, in the one JSON shape every route answers with."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

STATUS = {
    "invalid_arguments": 422,
    "invalid_input": 422,
    "limit_exceeded": 422,
    "unknown_tool": 404,
    "not_found": 404,
    "already_exists": 409,
    "conflict": 409,
    "stale_identity": 409,
    "arguments_too_large": 413,
    "rate_limited": 429,
    "queue_full": 429,
    "model_load": 503,
}


def error_response(status: int | None, code: str, message: str, **details: Any) -> JSONResponse:
    status = status or STATUS.get(code, 500)
    headers = {}
    if "retry_after" in details:
        headers["Retry-After"] = str(max(1, round(float(details["retry_after"]))))
    return JSONResponse({"error": {"code": code, "message": message, **details}}, status_code=status, headers=headers)
