"""ASGI middleware in front of every route: an API key (when configured) and a request size limit.

Both answer before the app reads a byte of the body, and both use the same JSON error shape as the
routes, so a client needs one error handler.
"""

from __future__ import annotations

import hmac
import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

PUBLIC_PATHS = ("/health", "/", "/index.html", "/favicon.ico")
PUBLIC_PREFIXES = ("/static/",)


async def send_error(send: Send, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def presented_key(headers: dict[bytes, bytes]) -> str | None:
    auth = headers.get(b"authorization", b"").decode("latin-1")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    key = headers.get(b"x-api-key", b"").decode("latin-1").strip()
    return key or None


class Guard:
    """Refuse unauthenticated calls (401) and oversized bodies (413); let the public studio files through."""

    def __init__(self, app: ASGIApp, *, api_key: str | None, max_body_bytes: int) -> None:
        self.app = app
        self.api_key = api_key.encode() if api_key else None
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        path = scope["path"]
        public = path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)
        if self.api_key is not None and not public:
            key = presented_key(headers)
            if key is None or not hmac.compare_digest(key.encode(), self.api_key):
                await send_error(
                    send, 401, "unauthorized",
                    "missing or wrong API key: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
                    {"WWW-Authenticate": "Bearer"},
                )  # fmt: skip
                return
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            await send_error(send, 413, "body_too_large", f"request bodies are limited to {self.max_body_bytes} bytes")
            return
        if scope["method"] in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        body = await self._read_limited(receive)
        if body is None:
            await send_error(send, 413, "body_too_large", f"request bodies are limited to {self.max_body_bytes} bytes")
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read_limited(self, receive: Receive) -> bytes | None:
        """The whole body (also when sent chunked, without a Content-Length), or None past the limit."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(chunks)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """Hand the app the body already read, then whatever the connection says next (e.g. a disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
