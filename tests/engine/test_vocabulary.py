"""A model that declares its vocabulary warns, once, about prompt words outside it (issue #19 item 5)."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from charforge.models import (
    VOCABULARY_FILE,
    default_bgm_model_path,
    default_model_path,
    read_vocabulary,
    write_vocabulary,
)

ROOT = Path(__file__).resolve().parents[2]
KNOWN = "portrait of a girl with red hair"


@pytest.fixture(scope="module")
def closed_model_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """conftest's tiny model declaring the words of KNOWN as all it knows."""
    folder = tmp_path_factory.mktemp("closed") / "model"
    shutil.copytree(tiny_model_dir, folder)
    write_vocabulary(folder, KNOWN.split())
    return folder


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "vocabulary" in r.getMessage()]


@pytest.mark.slow
def test_unknown_words_are_named_once_per_model(closed_model_dir, tiny_model_dir, caplog):
    from charforge.engine import encode_prompts, load_model, txt2img

    model = load_model(closed_model_dir, device="cpu")
    assert model.vocabulary == frozenset(KNOWN.split())
    with caplog.at_level(logging.WARNING):
        txt2img(model, "a knight in silver armor", seed=0, steps=1)
        [message] = _warnings(caplog)
        assert "knight, in, silver, armor" in message and str(closed_model_dir) in message
        encode_prompts(model, ["a knight in silver armor"])  # the same words again: not repeated
        encode_prompts(model, [KNOWN + ", red hair."])  # inside the vocabulary (punctuation is no word)
        assert len(_warnings(caplog)) == 1
        encode_prompts(model, ["a girl with blue hair"])
        assert len(_warnings(caplog)) == 2 and "blue" in _warnings(caplog)[-1]
        assert "with" not in _warnings(caplog)[-1].split(":")[1]

        open_model = load_model(tiny_model_dir, device="cpu")  # declares nothing: an open vocabulary
        assert open_model.vocabulary is None
        encode_prompts(open_model, ["a knight in silver armor"])
        assert len(_warnings(caplog)) == 2


@pytest.mark.slow  # a fresh process: torch and diffusers imported from cold
def test_the_cli_prints_the_warning_once(closed_model_dir, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", "from charforge.cli.main import main; main()", "generate", "--prompt",
         "a knight in silver armor", "--model", str(closed_model_dir), "--steps", "2", "--out",
         str(tmp_path / "knight.png"), "-w", str(tmp_path / "ws")],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if "vocabulary" in line]
    assert len(lines) == 1 and "knight, in, silver, armor" in lines[0]


@pytest.mark.parametrize("folder, module", [
    (default_model_path(), "charforge.recipes.portrait_mini.tokenizer"),
    (default_bgm_model_path(), "charforge.recipes.bgm_mini.dataset"),
])  # fmt: skip
def test_the_shipped_models_declare_their_caption_words(folder, module):
    """The declaration holds every word the recipe's captions use (so prompts built from the mood and
    expression tables never warn), each one token of the model's own tokenizer. The shipped BGM model
    predates the current recipe's captions, so its declaration may hold words the recipe no longer uses."""
    import importlib

    from transformers import CLIPTokenizer

    declared = read_vocabulary(folder)
    assert (folder / VOCABULARY_FILE).is_file() and declared
    caption_words = importlib.import_module(module).caption_words()
    assert {w for w in caption_words if w.isalpha()} <= declared
    tokenizer = CLIPTokenizer.from_pretrained(str(folder / "tokenizer"))
    assert all(len(tokenizer(w, add_special_tokens=False).input_ids) == 1 for w in declared)
