"""The tool definitions in each vendor's function-calling format, built from the one registry.

OpenAI (Chat Completions): `{"type": "function", "function": {"name", "description", "parameters"}}`;
OpenAI (Responses API): `{"type": "function", "name", "description", "parameters", "strict"}`;
Anthropic (Messages): `{"name", "description", "input_schema"}`. Not strict mode: the emotion map is
an open object of labels, which strict structured outputs cannot express, and the dispatcher
validates every call anyway.
"""

from __future__ import annotations

from typing import Any, Literal

from charforge.errors import InvalidInput
from charforge.tools.registry import TOOLS

Format = Literal["openai", "openai-responses", "anthropic"]
FORMATS: tuple[str, ...] = ("openai", "openai-responses", "anthropic")


def export(fmt: str = "openai") -> list[dict[str, Any]]:
    if fmt == "openai":
        return [
            {"type": "function",
             "function": {"name": t.name, "description": t.description, "parameters": t.input_schema()}}
            for t in TOOLS.values()
        ]
    if fmt == "openai-responses":
        return [
            {"type": "function", "name": t.name, "description": t.description, "parameters": t.input_schema(),
             "strict": False}
            for t in TOOLS.values()
        ]  # fmt: skip
    if fmt == "anthropic":
        return [{"name": t.name, "description": t.description, "input_schema": t.input_schema()}
                for t in TOOLS.values()]  # fmt: skip
    raise InvalidInput(f"unknown tool schema format {fmt!r} (choose from {', '.join(FORMATS)})")
