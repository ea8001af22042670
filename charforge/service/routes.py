"""The HTTP routes. Verbs an agent also has (emotion, render, bgm, edit, jobs) go through the same
`Toolbox.call_tool` as the LLM tools, so HTTP, MCP and function calling validate and limit alike.

Answers: 200 with the asset when it is cached, 202 with a job (and `Location: /jobs/{id}`) when the
model has to run; errors are `{"error": {"code", "message"}}` with the status the code implies.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from charforge.emotion import EmotionState
from charforge.errors import IntegrityError, NotFound
from charforge.forge import Forge
from charforge.service.errors import error_response
from charforge.tools.dispatch import Toolbox
from charforge.tools.models import MAX_TEXT, Name
from charforge.tools.registry import TOOLS
from charforge.tools.render import CONTENT_TYPES, UNFINISHED, asset_out, job_out
from charforge.version import __version__

router = APIRouter()
_ASSET = re.compile(r"[a-z][a-z0-9_]*/([0-9a-f]{2})/([0-9a-f]{64})(\.[a-z0-9]{1,8})")
SSE_POLL_SECONDS = 0.15


def _box(request: Request) -> Toolbox:
    return request.app.state.toolbox


def _forge(request: Request) -> Forge:
    return request.app.state.forge


def _body_schema(tool: str) -> dict[str, Any]:
    """OpenAPI request body of a tool-backed route: the tool's schema without the name (it is in the path)."""
    schema = TOOLS[tool].input_schema()
    schema["properties"] = {k: v for k, v in schema["properties"].items() if k != "name"}
    schema["required"] = [r for r in schema.get("required", []) if r != "name"]
    return {"requestBody": {"content": {"application/json": {"schema": schema}}, "required": False}}


def _call(request: Request, tool: str, arguments: dict[str, Any], *, accepted: bool = True) -> JSONResponse:
    outcome = _box(request).call_tool(tool, arguments)
    if not outcome["ok"]:
        err = dict(outcome["error"])
        return error_response(None, err.pop("code"), err.pop("message"), **err)
    result = outcome["result"]
    job = result.get("job") if accepted and isinstance(result, dict) else None
    if job is not None and result.get("asset") is None:
        return JSONResponse(result, status_code=202, headers={"Location": f"/jobs/{job['id']}"})
    return JSONResponse(result)


Body_ = Annotated[dict[str, Any], Body(default_factory=dict)]


# health and the studio page ------------------------------------------------------------------------


@router.get("/health", tags=["service"])
def health(request: Request) -> dict[str, Any]:
    worker = request.app.state.worker
    return {"ok": True, "version": __version__, "pending_jobs": None if worker is None else worker.pending()}


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def studio() -> HTMLResponse:
    page = resources.files("charforge.service").joinpath("static", "index.html").read_text(encoding="utf-8")
    return HTMLResponse(page)


# characters ---------------------------------------------------------------------------------------------


class CharacterBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name
    prompt: Annotated[str, Field(min_length=1, max_length=2000)]
    negative_prompt: Annotated[str, Field(max_length=2000)] = ""
    display_name: Annotated[str, Field(max_length=200)] | None = None
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] | None = None


class CharacterPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompt: Annotated[str, Field(min_length=1, max_length=2000)] | None = None
    negative_prompt: Annotated[str, Field(max_length=2000)] | None = None
    display_name: Annotated[str, Field(max_length=200)] | None = None
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] | None = None


@router.get("/characters", tags=["characters"])
def list_characters(request: Request) -> JSONResponse:
    return _call(request, "list_characters", {})


@router.post("/characters", status_code=201, tags=["characters"])
def create_character(request: Request, body: CharacterBody) -> JSONResponse:
    """Create a character drawn with the server's model; its base CG is rendered by a job."""
    forge = _forge(request)
    character = forge.create(
        body.name, prompt=body.prompt, negative_prompt=body.negative_prompt, seed=body.seed,
        display_name=body.display_name, model=request.app.state.model, build_identity=False,
    )  # fmt: skip
    first = _box(request).call_tool("render", {"name": character.name, "state": {}})
    data = {"character": character.to_dict(), "render": first.get("result"), "error": first.get("error")}
    return JSONResponse(data, status_code=201, headers={"Location": f"/characters/{character.name}"})


@router.get("/characters/{name}", tags=["characters"])
def get_character(request: Request, name: str, history: Annotated[int, Query(ge=0, le=50)] = 5) -> JSONResponse:
    return _call(request, "get_character", {"name": name, "history": history})


@router.patch("/characters/{name}", tags=["characters"])
def update_character(request: Request, name: str, body: CharacterPatch) -> dict[str, Any]:
    character = _forge(request).get(name)
    return character.update(**body.model_dump(exclude_none=True)).to_dict()


@router.delete("/characters/{name}", status_code=204, tags=["characters"])
def delete_character(request: Request, name: str) -> Response:
    _forge(request).delete(name)
    return Response(status_code=204)


@router.get("/characters/{name}/history", tags=["characters"])
def history(request: Request, name: str, limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[dict[str, Any]]:
    return [
        {"emotions": e.state.components(), "dominant": e.state.dominant, "source": e.source,
         "at": e.created_at.isoformat()}
        for e in _forge(request).get(name).store.history(limit=limit)
    ]


@router.get("/characters/{name}/assets", tags=["characters"])
def assets(
    request: Request, name: str, kind: Annotated[str | None, Query(pattern="^(cg|bgm|sprite)$")] = None
) -> list[dict[str, Any]]:
    out = []
    for asset in _forge(request).get(name).store.assets(kind):
        state = asset.params.get("state") if isinstance(asset.params.get("state"), dict) else None
        dominant = EmotionState(**state).dominant if state is not None else None
        out.append({**asset_out(asset).model_dump(), "state": state, "dominant": dominant})
    return out


# the verbs an agent has too -------------------------------------------------------------------------------


@router.post("/characters/{name}/emotion", tags=["verbs"], openapi_extra=_body_schema("set_emotion"))
def set_emotion(request: Request, name: str, body: Body_) -> JSONResponse:
    """Record how the character feels; 200 with its CG when cached, else 202 with a render job."""
    return _call(request, "set_emotion", {**body, "name": name})


@router.post("/characters/{name}/render", tags=["verbs"], openapi_extra=_body_schema("render"))
def render(request: Request, name: str, body: Body_) -> JSONResponse:
    return _call(request, "render", {**body, "name": name})


@router.post("/characters/{name}/bgm", tags=["verbs"], openapi_extra=_body_schema("bgm"))
def bgm(request: Request, name: str, body: Body_) -> JSONResponse:
    return _call(request, "bgm", {**body, "name": name})


@router.post("/characters/{name}/edit", tags=["verbs"], openapi_extra=_body_schema("edit"))
def edit(request: Request, name: str, body: Body_) -> JSONResponse:
    return _call(request, "edit", {**body, "name": name})


# jobs ------------------------------------------------------------------------------------------------------


@router.get("/jobs", tags=["jobs"])
def jobs(
    request: Request, status: Annotated[str | None, Query(pattern="^(queued|running|done|failed|cancelled)$")] = None
) -> list[dict[str, Any]]:
    return [job_out(j).model_dump() for j in _forge(request).jobs(status)]


@router.get("/jobs/{job_id}", tags=["jobs"])
def job(request: Request, job_id: Annotated[int, Path(ge=1)]) -> JSONResponse:
    return _call(request, "job_status", {"id": job_id}, accepted=False)


@router.get("/jobs/{job_id}/events", tags=["jobs"], response_class=StreamingResponse)
async def job_events(request: Request, job_id: int) -> Response:
    """Server-sent events: one `job` event per change of status or progress, ending when the job finishes."""
    forge = _forge(request)
    first = await run_in_threadpool(forge.get_job, job_id)  # NotFound -> 404 before the stream starts

    async def stream() -> AsyncIterator[str]:
        job, last = first, ""
        while True:
            data = job_out(job).model_dump_json()
            if data != last:
                yield f"event: job\ndata: {data}\n\n"
                last = data
            if job.status not in UNFINISHED or await request.is_disconnected():
                return
            await asyncio.sleep(SSE_POLL_SECONDS)
            job = await run_in_threadpool(forge.get_job, job_id)

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


# assets -----------------------------------------------------------------------------------------------------


@router.get("/assets/{path:path}", tags=["assets"])
def asset_file(request: Request, path: str) -> Response:
    """A rendered file. Its name is its sha256, which is also its ETag: `If-None-Match` answers 304."""
    match = _ASSET.fullmatch(path)
    if match is None or match[2][:2] != match[1]:
        return error_response(404, "not_found", f"no asset at /assets/{path[:MAX_TEXT]}")
    try:  # checked against its sha256 before serving: a modified file is never sent as the asset
        file = _forge(request).workspace.intact_asset(f"assets/{path}")
    except NotFound:
        return error_response(404, "not_found", f"no asset at /assets/{path}")
    except IntegrityError as exc:
        return error_response(409, exc.code, f"{exc}; ask for the state again to redraw it")
    etag = f'"{match[2]}"'
    headers = {"ETag": etag, "Cache-Control": "private, max-age=31536000, immutable"}
    wanted = [tag.strip() for tag in request.headers.get("if-none-match", "").split(",")]
    if etag in wanted or f"W/{etag}" in wanted or "*" in wanted:
        return Response(status_code=304, headers=headers)
    return FileResponse(file, media_type=CONTENT_TYPES.get(match[3], "application/octet-stream"), headers=headers)
