"""The MCP server over stdio, driven by the `mcp` SDK's own client in a real subprocess (`charforge mcp`)."""

from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path

import anyio
import pytest

mcp = pytest.importorskip("mcp")

from charforge.tools import TOOLS  # noqa: E402

pytestmark = pytest.mark.slow  # starts `charforge mcp` in a subprocess and renders through it

ROOT = Path(__file__).resolve().parents[2]


def server_params(workspace: Path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}  # fmt: skip
    return mcp.StdioServerParameters(
        command=sys.executable,
        args=["-c", "from charforge.cli.main import main; main()", "mcp", "--workspace", str(workspace)],
        env=env,
    )


def test_list_tools_and_set_emotion_over_stdio(cast):
    workspace = cast.workspace.root
    cast.close()  # the server process opens the workspace itself

    async def session():
        async with mcp.Client(server_params(workspace), read_timeout_seconds=120) as client:
            listed = await client.list_tools()
            first = await client.call_tool("set_emotion", {"name": "mira", "emotions": {"joy": 0.8}})
            job_id = first.structured_content["result"]["job"]["id"]
            for _ in range(600):
                status = await client.call_tool("job_status", {"id": job_id})
                if status.structured_content["result"]["status"] not in ("queued", "running"):
                    break
                await anyio.sleep(0.1)
            again = await client.call_tool("set_emotion", {"name": "mira", "emotions": {"joy": 0.8}})
            bad = await client.call_tool("set_emotion", {"name": "../../etc/passwd", "emotions": {"joy": 0.8}})
            return listed, first, status, again, bad

    listed, first, status, again, bad = anyio.run(session)
    by_name = {t.name: t for t in listed.tools}
    assert list(by_name) == list(TOOLS)
    assert by_name["set_emotion"].input_schema == TOOLS["set_emotion"].input_schema()

    assert not first.is_error and first.structured_content["result"]["job"]["status"] == "queued"
    assert json.loads(first.content[0].text) == first.structured_content
    done = status.structured_content["result"]
    assert done["status"] == "done", done

    # the cached answer carries the picture itself, and it is the file the job produced
    result = again.structured_content["result"]
    assert result["cached"] and result["asset"] == done["result"]["asset"]
    [image] = [c for c in again.content if c.type == "image"]
    data = base64.b64decode(image.data)
    assert image.mime_type == "image/png" and data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) == result["asset"]["size"]
    assert (workspace / result["asset"]["url"].lstrip("/")).read_bytes() == data

    assert bad.is_error and bad.structured_content["error"]["code"] == "invalid_arguments"
