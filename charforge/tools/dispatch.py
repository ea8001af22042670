"""`Toolbox.call_tool(name, arguments)`: the one entry point every surface uses, and it never raises.

Whatever arrives (a JSON string, a wrong type, NaN, a megabyte of text, `../../etc/passwd`), the caller
gets either `{"ok": true, "result": ...}` or `{"ok": false, "error": {"code", "message"}}`, with a
message an LLM can act on: which argument, what is allowed, when to retry.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from charforge.character.index import PictureIndex
from charforge.errors import CharforgeError
from charforge.forge import Forge, Job
from charforge.store.models import EmotionSource
from charforge.tools.limits import Limits, RateLimiter
from charforge.tools.registry import TOOLS
from charforge.tools.render import UNFINISHED
from charforge.tools.worker import Worker
from charforge.validation import invalid_input

log = logging.getLogger(__name__)

MAX_MESSAGE = 500


class ToolFailure(CharforgeError):
    """A limit or request problem found by the toolbox itself (the code says which)."""

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.details = details


def error(code: str, message: str, **details: Any) -> dict[str, Any]:
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 3] + "..."
    return {"ok": False, "error": {"code": code, "message": message, **details}}


class Toolbox:
    """The tools bound to one workspace, with its limits, the worker that renders queued jobs and the
    in-memory index that answers cached pictures without a query (`charforge.character.index`).

    Without a worker, jobs wait in the table for the next worker started on this workspace (another
    process, or this one after a restart).
    """

    def __init__(
        self,
        forge: Forge,
        *,
        limits: Limits | None = None,
        source: EmotionSource | str = EmotionSource.LLM_TOOL,
        worker: Worker | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.forge = forge
        self.limits = limits or Limits()
        self.source = EmotionSource(source)
        self.worker = worker
        self.rate = RateLimiter(self.limits.renders_per_minute, clock)
        self.pictures = PictureIndex(forge.repository)
        # the same request from several threads at once must find one job, not queue (and bill) one each
        self._queueing = threading.Lock()

    def call_tool(self, name: object, arguments: object = None) -> dict[str, Any]:
        try:
            return {"ok": True, "result": self._call(name, arguments)}
        except ToolFailure as exc:
            return error(exc.code, str(exc), **exc.details)
        except CharforgeError as exc:
            return error(exc.code, str(exc))
        except Exception as exc:  # a bug must not reach an agent as a traceback, nor crash a server
            log.exception("tool %r failed", name)
            return error("internal", f"charforge failed unexpectedly ({type(exc).__name__}); the call was not applied")

    def _call(self, name: object, arguments: object) -> dict[str, Any]:
        if not isinstance(name, str) or name not in TOOLS:
            shown = repr(name)[:60]
            raise ToolFailure("unknown_tool", f"no tool named {shown}; the tools are: {', '.join(TOOLS)}")
        tool = TOOLS[name]
        arguments = self._decode(arguments)
        try:
            args = tool.args.model_validate(arguments)
        except ValidationError as exc:
            raise ToolFailure("invalid_arguments", str(invalid_input(exc, f"{name} arguments"))) from None
        return tool.run(self, args).model_dump(mode="json")

    def _decode(self, arguments: object) -> dict[str, Any]:
        """Arguments as a dict: LLM clients hand over either parsed JSON or the JSON text itself."""
        limit = self.limits.max_argument_bytes
        if arguments is None:
            return {}
        if isinstance(arguments, (str, bytes)):
            if len(arguments) > limit:
                raise ToolFailure("arguments_too_large", f"arguments are {len(arguments)} bytes; the limit is {limit}")
            try:
                arguments = json.loads(arguments)
            except (ValueError, RecursionError):
                raise ToolFailure("invalid_arguments", "arguments are not valid JSON; send a JSON object") from None
        if not isinstance(arguments, dict):
            raise ToolFailure("invalid_arguments", f"arguments must be a JSON object, got {type(arguments).__name__}")
        try:
            size = len(json.dumps(arguments, default=repr, allow_nan=True))
        except (ValueError, TypeError, RecursionError):
            message = "arguments must be plain JSON (objects, lists, text, numbers)"
            raise ToolFailure("invalid_arguments", message) from None
        if size > limit:
            raise ToolFailure("arguments_too_large", f"arguments are {size} bytes of JSON; the limit is {limit}")
        return arguments

    # limits the verbs ask for ---------------------------------------------------------------------

    def check_seconds(self, seconds: float) -> float:
        if not (math.isfinite(seconds) and 0 < seconds <= self.limits.max_seconds):
            raise ToolFailure("limit_exceeded", f"seconds must be in (0, {self.limits.max_seconds:g}], got {seconds:g}")
        return float(seconds)

    def check_steps(self, steps: int | None) -> int | None:
        if steps is not None and not 1 <= steps <= self.limits.max_steps:
            raise ToolFailure("limit_exceeded", f"steps must be in [1, {self.limits.max_steps}], got {steps}")
        return steps

    def queue(self, kind: str, character: str, params: dict[str, Any]) -> Job:
        """A job for model work: the same unfinished job if one is already queued, else a new one within limits."""
        with self._queueing:
            return self._queue(kind, character, params)

    def _queue(self, kind: str, character: str, params: dict[str, Any]) -> Job:
        unfinished = [j for status in UNFINISHED for j in self.forge.jobs(status)]
        for job in unfinished:
            if job.kind == kind and job.character == character and job.params == params:
                return job
        if len(unfinished) >= self.limits.max_queued:
            raise ToolFailure(
                "queue_full", f"{len(unfinished)} jobs are waiting; retry when some are done", retry_after=10.0
            )
        wait = self.rate.take(character)
        if wait:
            raise ToolFailure(
                "rate_limited",
                f"{character} already has {self.limits.renders_per_minute} renders this minute; retry in {wait:.0f} s "
                "or reuse a state that is already rendered",
                retry_after=round(wait, 1),
            )
        job = self.forge.create_job(kind, params, character=character)
        if self.worker is not None:
            self.worker.submit(job.id)
        return job
