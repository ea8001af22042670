"""charforge as LLM tools: one set of definitions and limits for function calling, MCP and HTTP.

    box = Toolbox(forge, worker=Worker(forge).start())
    box.call_tool("set_emotion", {"name": "mira", "emotions": {"joy": 0.8}})
"""

from charforge.tools.dispatch import Toolbox
from charforge.tools.limits import Limits
from charforge.tools.registry import TOOLS, Tool

__all__ = ["TOOLS", "Limits", "Tool", "Toolbox"]
