"""Tests of the LLM tools, the worker and the MCP server (a package, so its conftest does not shadow tests/conftest.py)."""
