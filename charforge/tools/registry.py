"""The tool definitions, once: name, what it is for (written for an LLM), argument model and verb.

A new tool is a verb in `charforge.tools.verbs`, its argument model, and one line here; the
dispatcher, the OpenAI/Anthropic schemas and the MCP server all read this table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from charforge.tools import verbs
from charforge.tools.models import (
    Args,
    BgmArgs,
    EditArgs,
    GetCharacterArgs,
    JobStatusArgs,
    ListCharactersArgs,
    RenderArgs,
    SetEmotionArgs,
)


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    args: type[Args]
    run: Callable[[Any, Any], BaseModel]

    def input_schema(self) -> dict[str, Any]:
        """JSON Schema of the arguments, self-contained (no $ref), as both vendors' tool formats expect."""
        schema = self.args.model_json_schema()
        schema.pop("title", None)
        schema.setdefault("properties", {})
        return _inline(schema, schema.pop("$defs", {}))


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            return _inline(defs[node["$ref"].rsplit("/", 1)[-1]], defs)
        return {k: _inline(v, defs) for k, v in node.items() if k != "title"}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node


_ASYNC = " Returns the asset at once when it is cached, otherwise a job whose id you pass to job_status."

TOOLS: dict[str, Tool] = {
    tool.name: tool
    for tool in [
        Tool("list_characters", "List the cast: each character's name, prompt and current emotion.",
             ListCharactersArgs, verbs.list_characters),
        Tool("get_character", "One character: prompt, current emotion (with valence/arousal), recent history "
             "and how many pictures and music tracks it has.", GetCharacterArgs, verbs.get_character),
        Tool("set_emotion", "Set how a character feels now (recorded in its history) and get its picture for "
             "that feeling." + _ASYNC, SetEmotionArgs, verbs.set_emotion),
        Tool("render", "Get a character's picture for a state (default: its current one) without changing "
             "how it feels." + _ASYNC, RenderArgs, verbs.render),
        Tool("edit", "Redraw one region of a character's base picture, e.g. from_text 'blue outfit', "
             "to_text 'red outfit'. Always returns a job.", EditArgs, verbs.edit),
        Tool("bgm", "Background music matching a character's mood (default: its current state)." + _ASYNC,
             BgmArgs, verbs.bgm),
        Tool("job_status", "Status of a render job: queued, running, done (with the asset) or failed (with "
             "the reason).", JobStatusArgs, verbs.job_status),
    ]
}  # fmt: skip
