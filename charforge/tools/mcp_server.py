"""charforge's tools as an MCP server (the official `mcp` SDK's low-level server), over stdio or
streamable HTTP on loopback.

The tools are the registry's, with the registry's JSON schemas; every call goes through
`Toolbox.call_tool`, run in a worker thread so the server's event loop never waits on the database
or the model. A result carries the JSON (text and structured content) and, when it names a finished
picture or track, the file itself as MCP image or audio content.
"""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
from mcp.server.lowlevel import Server

from charforge.errors import IntegrityError, NotFound
from charforge.forge import Forge
from charforge.tools.dispatch import Toolbox
from charforge.tools.limits import Limits
from charforge.tools.registry import TOOLS
from charforge.tools.worker import Worker
from charforge.version import __version__

log = logging.getLogger(__name__)

MAX_INLINE_BYTES = 4 * 1024 * 1024  # larger files are sent as a resource link instead
INSTRUCTIONS = (
    "charforge keeps a character's picture and music in step with how it feels. Call list_characters, then "
    "set_emotion when the character's feeling changes; if the result has a job instead of an asset, poll "
    "job_status until it is done."
)


def _asset_of(outcome: dict[str, Any]) -> dict[str, Any] | None:
    result = outcome.get("result") if outcome.get("ok") else None
    if not isinstance(result, dict):
        return None
    if isinstance(result.get("asset"), dict):
        return result["asset"]
    inner = result.get("result")
    return inner.get("asset") if isinstance(inner, dict) and isinstance(inner.get("asset"), dict) else None


def _media(forge: Forge, asset: dict[str, Any]) -> types.ContentBlock | None:
    try:  # checked against its sha256 before it is handed out
        path = forge.workspace.intact_asset(asset["url"].lstrip("/"))
    except (NotFound, IntegrityError):
        return None
    mime = asset["content_type"]
    if asset["size"] > MAX_INLINE_BYTES or mime.split("/")[0] not in ("image", "audio"):
        return types.ResourceLink(type="resource_link", name=path.name, uri=path.as_uri(), mime_type=mime,
                                  size=asset["size"])  # fmt: skip
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    if mime.startswith("image/"):
        return types.ImageContent(type="image", data=data, mime_type=mime)
    return types.AudioContent(type="audio", data=data, mime_type=mime)


def build_server(box: Toolbox) -> Server[Any]:
    tools = [types.Tool(name=t.name, description=t.description, input_schema=t.input_schema()) for t in TOOLS.values()]

    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=tools)

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        outcome = await anyio.to_thread.run_sync(box.call_tool, params.name, params.arguments)
        content: list[types.ContentBlock] = [types.TextContent(type="text", text=json.dumps(outcome))]
        asset = _asset_of(outcome)
        if asset is not None:
            media = await anyio.to_thread.run_sync(_media, box.forge, asset)
            if media is not None:
                content.append(media)
        return types.CallToolResult(content=content, structured_content=outcome, is_error=not outcome["ok"])

    return Server("charforge", version=__version__, instructions=INSTRUCTIONS, on_list_tools=list_tools,
                  on_call_tool=call_tool)  # fmt: skip


def serve(
    workspace: Path, *, http_port: int | None = None, host: str = "127.0.0.1", limits: Limits | None = None
) -> None:
    """Run until the client disconnects (stdio) or the process is stopped (HTTP); one worker renders."""
    forge = Forge.open(workspace)
    worker = Worker(forge).start()
    box = Toolbox(forge, limits=limits, worker=worker)
    server = build_server(box)
    try:
        if http_port is None:
            from mcp.server.stdio import stdio_server

            async def run_stdio() -> None:
                async with stdio_server() as (read, write):
                    await server.run(read, write, server.create_initialization_options())

            anyio.run(run_stdio)
        else:
            import uvicorn

            app = server.streamable_http_app(host=host)
            log.info("MCP streamable HTTP at http://%s:%d/mcp", host, http_port)
            uvicorn.run(app, host=host, port=http_port, log_level="warning")
    finally:
        worker.stop()
        forge.close()
