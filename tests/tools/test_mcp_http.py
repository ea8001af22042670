"""`charforge mcp --http PORT`: the SDK's streamable HTTP transport on loopback, reached by the SDK's client."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

mcp = pytest.importorskip("mcp")

from charforge.tools import TOOLS  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_streamable_http_lists_and_calls_tools(cast, tmp_path):
    workspace = cast.workspace.root
    cast.close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    log = open(tmp_path / "mcp.log", "w")
    process = subprocess.Popen([sys.executable, "-c", "from charforge.cli.main import main; main()", "mcp", "--http",
                                str(port), "--workspace", str(workspace)], env=env, stdout=log, stderr=log)  # fmt: skip

    async def session():
        for _ in range(300):  # wait for the port
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                await anyio.sleep(0.2)
        async with mcp.Client(f"http://127.0.0.1:{port}/mcp", read_timeout_seconds=60) as client:
            listed = await client.list_tools()
            got = await client.call_tool("get_character", {"name": "mira"})
            return listed, got

    try:
        listed, got = anyio.run(session)
    finally:
        process.terminate()
        process.wait(20)
        log.close()
    assert [t.name for t in listed.tools] == list(TOOLS)
    assert not got.is_error and got.structured_content["result"]["name"] == "mira"
    assert "http://127.0.0.1:" in (tmp_path / "mcp.log").read_text()
