"""Fixtures of the batch tests: a workspace on SQLite or PostgreSQL, and `mira` on the tiny model."""

from __future__ import annotations

import pytest
from helpers.characters import make_character


@pytest.fixture
def forge(any_forge):
    """Tests using it run on SQLite and on PostgreSQL."""
    return any_forge


@pytest.fixture
def mira(forge, tiny_model_dir):
    return make_character(forge, tiny_model_dir)
