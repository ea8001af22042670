"""examples/agent_tools.py: recorded tool calls in both vendors' shapes, replayed through the dispatcher (no network)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("openai")
pytest.importorskip("anthropic")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "agent_tools.py"


def load_example():
    spec = importlib.util.spec_from_file_location("agent_tools_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_recorded_agent_session_replays_through_the_tools(toolbox):
    example = load_example()
    outcomes = example.replay(toolbox)
    listed, first, typo, corrected, status, render = outcomes
    assert [c["name"] for c in listed["result"]["characters"]] == ["mira"]
    assert first["ok"] and first["result"]["job"]["id"] == 1
    # a misspelt label comes back as an error the model can fix, and the corrected call goes through
    assert typo["error"]["code"] == "invalid_input" and "did you mean 'excitement'" in typo["error"]["message"]
    assert corrected["ok"] and corrected["result"]["state"]["dominant"] in ("joy", "anticipation")
    assert status["result"]["status"] == "done"
    # the picture the job produced is what render answers from the cache for the same state
    assert render["result"]["cached"] and render["result"]["asset"] == status["result"]["result"]["asset"]
    history = toolbox.forge.get("mira").store.history()
    assert [e.source for e in history] == ["llm-tool", "llm-tool"]
