"""`create_app(settings)`: the FastAPI application behind `charforge serve`.

One process holds one workspace, one `Toolbox` (the tools' validation and limits, shared with MCP and
function calling) and one `Worker` thread that owns the model. Handlers are plain `def`s, which
FastAPI runs in its thread pool, so neither database work nor torch ever blocks the event loop.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from charforge.errors import CharforgeError
from charforge.forge import Forge
from charforge.service.errors import error_response
from charforge.service.routes import router
from charforge.service.security import Guard
from charforge.service.settings import ServiceSettings
from charforge.store.models import EmotionSource
from charforge.tools.dispatch import Toolbox
from charforge.tools.worker import Worker
from charforge.version import __version__

log = logging.getLogger(__name__)


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    settings = settings or ServiceSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        forge = Forge.open(settings.workspace)
        worker = Worker(forge, batch=settings.batch)
        app.state.forge = forge
        app.state.model = settings.model
        app.state.worker = worker if settings.worker else None
        app.state.toolbox = Toolbox(
            forge, limits=settings.limits, source=EmotionSource.API, worker=worker if settings.worker else None
        )
        if settings.worker:
            worker.start()
        log.info("serving workspace %s", forge.workspace.root)
        try:
            yield
        finally:
            worker.stop()
            forge.close()

    app = FastAPI(
        title="charforge",
        version=__version__,
        description="A character's CG and BGM in step with how it feels. Authenticate with "
        "`Authorization: Bearer KEY` or `X-API-Key: KEY` when the server has a key.",
        lifespan=lifespan,
    )
    app.include_router(router)
    static = resources.files("charforge.service").joinpath("static")
    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        loc = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = str(first.get("msg", "invalid request"))
        return error_response(422, "invalid_arguments", f"{loc}: {message}" if loc else message)

    @app.exception_handler(CharforgeError)
    async def _charforge(request: Request, exc: CharforgeError) -> JSONResponse:
        return error_response(None, exc.code, str(exc))

    app.add_middleware(Guard, api_key=settings.api_key, max_body_bytes=settings.max_body_bytes)
    return app
