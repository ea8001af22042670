"""Exported schemas: each vendor SDK's own request types accept them, and they describe what the dispatcher accepts."""

from __future__ import annotations

import json

import pytest
from pydantic import ConfigDict, TypeAdapter

from charforge.tools import TOOLS
from charforge.tools.schema import export

STRICT = ConfigDict(extra="forbid")  # a misspelt key must fail, not be ignored


def test_openai_chat_tools_validate_against_the_sdk_types():
    types = pytest.importorskip("openai.types.chat")
    adapter = TypeAdapter(list[types.ChatCompletionFunctionToolParam], config=STRICT)
    tools = adapter.validate_python(export("openai"), strict=True)
    assert [t["function"]["name"] for t in tools] == list(TOOLS)


def test_openai_responses_tools_validate_against_the_sdk_types():
    types = pytest.importorskip("openai.types.responses")
    tools = TypeAdapter(list[types.FunctionToolParam], config=STRICT).validate_python(export("openai-responses"), strict=True)
    assert all(t["type"] == "function" and t["parameters"]["type"] == "object" for t in tools)


def test_anthropic_tools_validate_against_the_sdk_types():
    types = pytest.importorskip("anthropic.types")
    tools = TypeAdapter(list[types.ToolParam], config=STRICT).validate_python(export("anthropic"), strict=True)
    assert [t["name"] for t in tools] == list(TOOLS)


def test_schemas_are_self_contained_json_schema_objects():
    jsonschema = pytest.importorskip("jsonschema")
    for tool in export("anthropic"):
        schema = tool["input_schema"]
        assert "$ref" not in json.dumps(schema) and schema["type"] == "object"
        jsonschema.Draft202012Validator.check_schema(schema)
        assert 0 < len(tool["description"]) < 400


def test_schema_and_dispatcher_agree_on_examples():
    """What the published schema accepts the dispatcher's models accept, and the reverse, on a few cases."""
    jsonschema = pytest.importorskip("jsonschema")
    cases = [
        ("set_emotion", {"name": "mira", "emotions": {"joy": 0.8}}),
        ("set_emotion", {"name": "mira", "emotions": {"joy": 1.8}}),
        ("set_emotion", {"name": "Mira", "emotions": {}}),
        ("set_emotion", {"name": "mira"}),
        ("bgm", {"name": "mira", "seconds": 61}),
        ("bgm", {"name": "mira", "seconds": 20, "loop": True}),
        ("job_status", {"id": 0}),
        ("render", {"name": "mira", "extra": 1}),
    ]
    for name, arguments in cases:
        schema_ok = jsonschema.Draft202012Validator(TOOLS[name].input_schema()).is_valid(arguments)
        try:
            TOOLS[name].args.model_validate(arguments)
            model_ok = True
        except ValueError:
            model_ok = False
        assert schema_ok == model_ok, (name, arguments)


def test_cli_export_prints_the_same_json(cli):
    code, out, err = cli("tools", "export", "--format", "anthropic")
    assert code == 0 and json.loads(out) == export("anthropic")
    code, out, err = cli("tools", "export", "--format", "gemini")
    assert code == 2 and err.count("\n") == 1 and "openai" in err
