"""An LLM agent deciding how a character feels, through charforge's tools (OpenAI or Anthropic function calling).

    python examples/agent_tools.py [WORKSPACE]

With OPENAI_API_KEY or ANTHROPIC_API_KEY set (and the vendor's SDK installed), the exported tool
schemas go to the model and every tool call it makes is answered by `Toolbox.call_tool`. Without a
key, the recorded tool calls in `agent_tools_transcript.json` (in both vendors' wire shapes, written
by hand rather than captured from a live model) are replayed through the same handlers, offline.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from charforge import Forge
from charforge.tools import Toolbox
from charforge.tools.schema import export
from charforge.tools.worker import Worker

TRANSCRIPT = Path(__file__).with_name("agent_tools_transcript.json")
SYSTEM = ("You direct the character Mira in a visual novel. After each line of the story, decide how she feels "
          "and call set_emotion; poll job_status if you get a job. Then answer in one sentence.")  # fmt: skip
STORY = "Mira opens the letter: she got the scholarship she worked for all year."


def answer_openai_calls(box: Toolbox, tool_calls: list[Any]) -> list[dict[str, Any]]:
    """Chat Completions `message.tool_calls` -> the `tool` messages that answer them."""
    return [{"role": "tool", "tool_call_id": call.id,
             "content": json.dumps(box.call_tool(call.function.name, call.function.arguments))}
            for call in tool_calls]  # fmt: skip


def answer_anthropic_blocks(box: Toolbox, content: list[Any]) -> list[dict[str, Any]]:
    """Messages API `content` (tool_use blocks) -> the `tool_result` blocks of the next user turn."""
    results = []
    for block in content:
        if block.type == "tool_use":
            outcome = box.call_tool(block.name, block.input)
            results.append({"type": "tool_result", "tool_use_id": block.id, "content": json.dumps(outcome),
                            "is_error": not outcome["ok"]})  # fmt: skip
    return results


def run_openai(box: Toolbox, model: str = "gpt-4o-mini") -> None:
    from openai import OpenAI

    client = OpenAI()
    messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": STORY}]
    for _ in range(8):
        response = client.chat.completions.create(model=model, messages=messages, tools=export("openai"))
        reply = response.choices[0].message
        messages.append(reply.model_dump(exclude_none=True))
        if not reply.tool_calls:
            print(reply.content)
            return
        messages.extend(answer_openai_calls(box, reply.tool_calls))


def run_anthropic(box: Toolbox, model: str = "claude-sonnet-4-5") -> None:
    from anthropic import Anthropic

    client = Anthropic()
    messages: list[dict[str, Any]] = [{"role": "user", "content": STORY}]
    for _ in range(8):
        reply = client.messages.create(model=model, max_tokens=512, system=SYSTEM, messages=messages,
                                       tools=export("anthropic"))  # fmt: skip
        messages.append({"role": "assistant", "content": reply.content})
        if reply.stop_reason != "tool_use":
            print("".join(block.text for block in reply.content if block.type == "text"))
            return
        messages.append({"role": "user", "content": answer_anthropic_blocks(box, reply.content)})


def replay(box: Toolbox, transcript: Path = TRANSCRIPT, wait: float = 60.0) -> list[dict[str, Any]]:
    """Answer the recorded calls in order; a `job_status` call waits for the job first, as a polling agent would."""
    from anthropic.types import ToolUseBlock
    from openai.types.chat import ChatCompletionMessageToolCall

    outcomes = []
    for turn in json.loads(transcript.read_text()):
        if turn["name"] == "job_status" and box.worker is not None:
            box.worker.wait_idle(wait)
        if turn["vendor"] == "openai":
            call = ChatCompletionMessageToolCall.model_validate(turn["call"])
            [message] = answer_openai_calls(box, [call])
            outcome = json.loads(message["content"])
        else:
            block = ToolUseBlock.model_validate(turn["call"])
            [result] = answer_anthropic_blocks(box, [block])
            outcome = json.loads(result["content"])
        print(f"{turn['name']}: {'ok' if outcome['ok'] else outcome['error']['code']}")
        outcomes.append(outcome)
    return outcomes


def main(workspace: str) -> None:
    with Forge.open(workspace) as forge:
        if not forge.exists("mira"):
            from charforge.cards import load_cards
            from charforge.demo import cast_dir

            forge.create_from_card(next(card for _, card in load_cards(cast_dir()) if card.name == "mira"))
        worker = Worker(forge).start()
        box = Toolbox(forge, worker=worker)
        try:
            if os.environ.get("OPENAI_API_KEY"):
                run_openai(box)
            elif os.environ.get("ANTHROPIC_API_KEY"):
                run_anthropic(box)
            else:
                replay(box)
            worker.wait_idle()
        finally:
            worker.stop()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "examples-workspace")
