"""Property: whatever arguments arrive, every tool answers with a structured result or error, never raises,
and writes nothing outside the workspace. 1,000 generated argument sets per tool."""

from __future__ import annotations

import math
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from charforge.emotion.table import emotion_table
from charforge.tools import TOOLS, Limits, Toolbox

EXAMPLES = 1000  # per tool, in the slow suite; the quick suite runs a smaller sample of the same property
QUICK = 100
NAMES = st.sampled_from(["mira", "nobody", "../../etc/passwd", "/etc/passwd", "..", "MIRA", "mira/../..", "", "a" * 65,
                         "con", "mira\x00", "ｍｉｒａ"])  # fmt: skip
LABELS = st.one_of(st.sampled_from(emotion_table().known_names()), st.sampled_from(["jyo", "", " ", "JOY", "joy\n"]),
                   st.text(max_size=40))  # fmt: skip
NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=0, max_value=1),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -0.0, 10**400]),
)
ANY = st.recursive(
    st.one_of(st.none(), st.booleans(), NUMBERS, st.text(max_size=30), st.binary(max_size=10)),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)
EMOTIONS = st.one_of(st.dictionaries(LABELS, st.one_of(NUMBERS, ANY), max_size=6), ANY)
HUGE = st.sampled_from(["x" * 10_000, "y" * 300, "z" * 301, "blue outfit " * 50])
TEXTS = st.one_of(st.sampled_from(["green outfit", "red outfit", "red hair", "blue eyes", "smile"]), st.text(max_size=50), HUGE, ANY)

FIELDS = {
    "name": NAMES | ANY,
    "history": st.integers(-5, 100) | ANY,
    "emotions": EMOTIONS,
    "state": EMOTIONS | st.none(),
    "reason": TEXTS,
    "from_text": TEXTS,
    "to_text": TEXTS,
    "region": st.sampled_from(["outfit", "hair", "face", "background", "../x", "eyes"]) | ANY,
    "steps": st.integers(-3, 100) | NUMBERS | ANY,
    "seconds": NUMBERS | ANY,
    "loop": st.booleans() | ANY,
    "id": st.integers(-(2**64), 2**64) | NUMBERS | ANY,
}


GOOD_EMOTIONS = st.dictionaries(st.sampled_from(emotion_table().known_names()), st.floats(0, 1), max_size=4)
VALID = {
    "name": st.just("mira"),
    "history": st.integers(0, 50),
    "emotions": GOOD_EMOTIONS,
    "state": GOOD_EMOTIONS | st.none(),
    "reason": st.text(max_size=100),
    "from_text": st.sampled_from(["green outfit", "red hair", "white background"]),
    "to_text": st.sampled_from(["red outfit", "black hair", "night background", "smile"]),
    "region": st.sampled_from(["outfit", "hair", "background"]) | st.none(),
    "steps": st.integers(1, 50) | st.none(),
    "seconds": st.floats(0.5, 60),
    "loop": st.booleans(),
    "id": st.integers(1, 4),
}


def arguments_for(tool):
    """Mostly the tool's own fields (right or wrong values), sometimes missing ones, unknown ones, or junk."""
    own = sorted(tool.args.model_fields)
    required = [f for f in own if tool.args.model_fields[f].is_required()]
    valid = st.fixed_dictionaries({f: VALID[f] for f in required},
                                  optional={f: VALID[f] for f in own if f not in required})  # fmt: skip
    known = st.fixed_dictionaries({}, optional={f: FIELDS[f] | VALID[f] for f in own})
    extra = st.dictionaries(st.sampled_from([*FIELDS, "mood", "__class__", "path"]), ANY, max_size=3)
    merged = st.builds(lambda a, b: {**b, **a}, known, extra)
    return st.one_of(valid, valid, known, known, merged, ANY, st.text(max_size=200),
                     st.sampled_from(['{"name": "mira"}', "{", "[]"]))  # fmt: skip


@pytest.fixture
def isolated(cast, tmp_path, monkeypatch):
    """Run from an empty folder so a stray relative write would show up there."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    for level in (0.2, 0.4, 0.6):  # jobs for job_status to find
        cast.create_job("feel", {"state": {"joy": level}}, character="mira")
    return cast


def _files(root):
    return {os.path.join(d, f) for d, _, files in os.walk(root) for f in files}


@pytest.mark.parametrize("examples", [QUICK, pytest.param(EXAMPLES, marks=pytest.mark.slow)])
@pytest.mark.parametrize("tool_name", list(TOOLS))
def test_any_arguments_give_a_structured_answer(isolated, tmp_path, tool_name, examples):
    forge = isolated
    box = Toolbox(forge, limits=Limits(renders_per_minute=1000))  # no worker: nothing renders, jobs wait
    outside_before = _files(tmp_path) - _files(forge.workspace.root)
    seen = {"ok": 0, "error": 0}

    @settings(max_examples=examples, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip
    @given(arguments_for(TOOLS[tool_name]))
    def check(arguments):
        outcome = box.call_tool(tool_name, arguments)
        assert set(outcome) == {"ok", "result"} or set(outcome) == {"ok", "error"}
        if outcome["ok"]:
            seen["ok"] += 1
            assert isinstance(outcome["result"], dict)
        else:
            seen["error"] += 1
            error = outcome["error"]
            assert error["code"] != "internal", error
            assert isinstance(error["message"], str) and 0 < len(error["message"]) <= 500

    check()
    print(tool_name, seen)
    assert seen["ok"] + seen["error"] >= examples
    assert _files(tmp_path) - _files(forge.workspace.root) == outside_before
    assert not os.path.exists("/etc/passwd.png")
