"""`charforge tools export`, `charforge mcp` and `charforge serve`: the agent and service surfaces.

Heavy imports (FastAPI, uvicorn, the MCP SDK, torch) happen inside the commands so `charforge --help`
stays fast and the `service` extra is only needed by the commands that use it.
"""

from __future__ import annotations

from typing import Annotated

import typer

from charforge.cli.options import WorkspaceOpt
from charforge.cli.workspace import echo_json, workspace_at
from charforge.errors import InvalidInput

app = typer.Typer()
tools_app = typer.Typer(help="charforge as LLM tools (function calling).", no_args_is_help=True)
app.add_typer(tools_app, name="tools")

HostOpt = Annotated[str, typer.Option("--host", help="Address to bind; loopback unless you also set an API key.")]
RateOpt = Annotated[
    int, typer.Option("--renders-per-minute", min=1, help="Model runs a character may queue per minute.")
]


def _need(module: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise InvalidInput(f"this command needs the '{module}' package: pip install 'charforge[service]'")


def _check_exposure(host: str, api_key: str | None) -> None:
    from charforge.service.settings import is_loopback

    if api_key is not None and len(api_key) < 8:
        raise InvalidInput("the API key must be at least 8 characters long")
    if not is_loopback(host) and api_key is None:
        raise InvalidInput(f"refusing to serve on {host} without an API key: pass --api-key or set CHARFORGE_API_KEY")


@tools_app.command("export")
def tools_export(
    fmt: Annotated[str, typer.Option("--format", help="openai, openai-responses or anthropic.")] = "openai",
    workspace: WorkspaceOpt = None,  # accepted like everywhere; the tool definitions do not depend on it
) -> None:
    """Print the tool definitions in a vendor's function-calling format (JSON)."""
    from charforge.tools.schema import export

    echo_json(export(fmt))


@app.command()
def mcp(
    ctx: typer.Context,
    http: Annotated[
        int | None, typer.Option("--http", min=1, max=65535, help="Serve streamable HTTP on this port, not stdio.")
    ] = None,
    host: HostOpt = "127.0.0.1",
    renders_per_minute: RateOpt = 6,
    workspace: WorkspaceOpt = None,
) -> None:
    """Run the MCP server (stdio by default) with charforge's tools."""
    from charforge.service.settings import is_loopback

    _need("mcp")
    if http is not None and not is_loopback(host):
        raise InvalidInput(f"the MCP HTTP transport has no authentication here; bind it to loopback, not {host}")
    from charforge.tools.limits import Limits
    from charforge.tools.mcp_server import serve as serve_mcp

    if http is not None:
        typer.echo(f"charforge MCP server: http://{host}:{http}/mcp", err=True)
    serve_mcp(workspace_at(ctx).root, http_port=http, host=host,
              limits=Limits(renders_per_minute=renders_per_minute))


@app.command()
def serve(
    ctx: typer.Context,
    host: HostOpt = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port.")] = 8000,
    api_key: Annotated[
        str | None,
        typer.Option("--api-key", envvar="CHARFORGE_API_KEY", show_envvar=True,
                     help="Require this key (Bearer or X-API-Key) on every API route."),
    ] = None,
    model: Annotated[str | None, typer.Option("--model", help="Model for characters created over HTTP.")] = None,
    worker: Annotated[bool, typer.Option("--worker/--no-worker", help="Render queued jobs in this process.")] = True,
    batch: Annotated[
        int, typer.Option("--batch", min=1, max=64, help="Waiting CG jobs of one character drawn in one loop call.")
    ] = 8,
    renders_per_minute: RateOpt = 6,
    workspace: WorkspaceOpt = None,
) -> None:
    """Serve the HTTP API and the studio page (OpenAPI docs at /docs)."""
    _need("fastapi")
    _need("uvicorn")
    _check_exposure(host, api_key)
    import uvicorn

    from charforge.service import ServiceSettings, create_app
    from charforge.tools.limits import Limits

    settings = ServiceSettings(workspace=workspace_at(ctx).root, api_key=api_key, model=model, worker=worker,
                               batch=batch, limits=Limits(renders_per_minute=renders_per_minute))  # fmt: skip
    shown = f"[{host}]" if ":" in host else host
    typer.echo(f"charforge studio: http://{shown}:{port}/  (API docs: http://{shown}:{port}/docs)")
    # uvloop and httptools come with the `service` extra (uvicorn picks them); no access log: it is below
    # the warning level anyway, and a cached answer should not pay for one per request
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning", access_log=False)
