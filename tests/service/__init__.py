"""Tests of the HTTP service and the studio page (a package, so its conftest does not shadow tests/conftest.py)."""
