"""Shared CLI plumbing: --workspace everywhere, -h/--version, clean help, and usage errors before torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from charforge.cli.main import command
from charforge.cli.options import torch_build_devices

ROOT = Path(__file__).resolve().parents[2]


def leaf_commands(group=None, path=()):
    group = command() if group is None else group
    for name, sub in group.commands.items():
        if hasattr(sub, "commands"):
            yield from leaf_commands(sub, (*path, name))
        else:
            yield (*path, name)


LEAVES = list(leaf_commands())


def test_every_command_is_registered():
    names = {" ".join(p) for p in LEAVES}
    assert {
        "init",
        "create",
        "list",
        "show",
        "rename",
        "delete",
        "import",
        "emote",
        "explain",
        "mask",
        "reinvert",
        "inpaint",
        "bgm",
        "demo",
        "generate",
        "invert",
        "edit",
        "attention",
        "db upgrade",
        "db downgrade",
        "db current",
        "train portrait-mini",
        "train bgm-mini",
        "eval portrait-mini",
        "eval bgm-mini",
    } <= names


@pytest.mark.parametrize("path", LEAVES, ids=[" ".join(p) for p in LEAVES])
def test_every_command_takes_workspace_and_h_and_has_clean_help(cli, path):
    code, out, err = cli(*path, "-h")
    assert code == 0 and err == ""
    assert "--workspace" in out and "--help" in out
    for placeholder in ("<bool>", "<str>", "<int>", "<float>", "<path>", "{"):
        assert placeholder not in out, (placeholder, out)


def test_version(cli):
    import charforge

    code, out, _ = cli("--version")
    assert code == 0 and out.strip() == f"charforge {charforge.__version__}"


def test_the_cli_scheduler_choices_are_the_engines():
    from charforge.cli.generate import SCHEDULERS
    from charforge.engine import schedulers

    assert list(SCHEDULERS) == list(schedulers.SCHEDULERS)


# Usage errors, each run in one fresh process that records whether torch got imported. ------------

PROBE = """
import contextlib, io, json, sys
from charforge.cli.main import main
results = []
for args in json.loads(sys.argv[1]):
    sys.argv = ["charforge", *args]
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code
    results.append({"code": code, "err": err.getvalue(), "torch": "torch" in sys.modules})
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs")
    (folder / "not-an-image.png").write_text("hello")
    (folder / "a-dir.png").mkdir()
    (folder / "a-dir.wav").mkdir()
    return folder


def usage_cases(folder: Path) -> list[tuple[list[str], str]]:
    gen = ["generate", "--prompt", "a cat"]
    out = ["--out", str(folder / "o.png")]
    no_cuda = [] if "cuda" in torch_build_devices() else [([*gen, *out, "--device", "cuda"], "cuda is not available")]
    return [
        ([*gen, *out, "--scheduler", "bogus"], "unknown scheduler 'bogus'"),
        ([*gen, "--out", str(folder / "missing" / "o.png")], "does not exist"),
        ([*gen, "--out", str(folder / "a-dir.png")], "is a directory"),
        ([*gen, *out, "--image", str(folder / "missing.png")], "--image file not found"),
        ([*gen, *out, "--image", str(folder / "not-an-image.png")], "not a readable image"),
        ([*gen, *out, "--device", "gpu"], "unknown device 'gpu'"),
        ([*gen, *out, "--seed", str(2**70)], "--seed"),
        ([*gen, *out, "--guidance", "nan"], "not a finite number"),
        ([*gen, *out, "--guidance", "inf"], "not a finite number"),
        ([*gen, *out, "--strength", "nan"], "not a finite number"),
        (["bgm", "mira", "--seed", str(2**70)], "--seed"),
        (["bgm", "--valence", "nan", "--arousal", "0", "--out", str(folder / "a.wav")], "not a finite number"),
        (["bgm", "--valence", "0", "--arousal", "0", "--out", str(folder / "a-dir.wav")], "is a directory"),
        (["bgm", "mira", "--seconds", "inf"], "not a finite number"),
        (["create", "mira", "--prompt", "x", "--seed", str(2**70)], "--seed"),
        (["inpaint", "mira", "--prompt", "x", "--region", "hair", "--seed", "-1"], "--seed"),
        (["invert", str(folder / "x.png"), "--prompt", "x", "--out", str(folder / "not-an-image.png")], "not a folder"),
        (["edit", str(folder / "x.png"), "--prompt", "a", "--to", "b", "--out", str(folder / "o.png"),
          "--cross-steps", "nan"], "not a finite number"),
        (["train", "portrait-mini", "--out", str(folder / "not-an-image.png")], "not a folder"),
        (["train", "bgm-mini", "--out", str(folder / "run"), "--minutes", "nan"], "not a finite number"),
        (["eval", "portrait-mini", "--guidance", "nan"], "not a finite number"),
        (["emote", "mira", "joy=0.5", "--device", "tpu"], "unknown device 'tpu'"),
        (["demo", "--device", "quantum"], "unknown device"),
        *no_cuda,
    ]  # fmt: skip


@pytest.mark.slow
def test_usage_errors_are_one_line_exit_2_and_never_import_torch(inputs, tmp_path):
    cases = usage_cases(inputs)
    env = {**__import__("os").environ, "PYTHONPATH": str(ROOT), "CHARFORGE_HOME": str(tmp_path / "ws")}
    env.pop("CHARFORGE_DEVICE", None)
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps([args for args, _ in cases])],
                          capture_output=True, text=True, env=env, cwd=tmp_path, check=True)  # fmt: skip
    for (args, fragment), result in zip(cases, json.loads(done.stdout)):
        lines = result["err"].strip().splitlines()
        assert result["code"] == 2, (args, result)
        assert len(lines) == 1 and fragment in lines[0], (args, lines)
        assert not result["torch"], (args, "imported torch before reporting a usage error")
    assert not (tmp_path / "ws").exists() and not (inputs / "o.png").exists()


def test_device_from_the_environment_is_validated_too(cli, monkeypatch, tmp_path):
    monkeypatch.setenv("CHARFORGE_DEVICE", "gpu")
    code, _, err = cli("generate", "--prompt", "x", "--out", tmp_path / "o.png")
    assert code == 2 and "unknown device 'gpu'" in err and "cpu" in err


def test_the_engine_refuses_a_device_this_torch_does_not_have(monkeypatch):
    import torch

    from charforge.engine.loading import pick_device
    from charforge.errors import InvalidInput

    monkeypatch.setenv("CHARFORGE_DEVICE", "cpu")
    assert pick_device() == torch.device("cpu")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    monkeypatch.setenv("CHARFORGE_DEVICE", "cuda")
    with pytest.raises(InvalidInput, match="cuda is not available.*has cpu"):
        pick_device()
    with pytest.raises(InvalidInput, match="cuda:1 is not available"):
        pick_device("cuda:1")
    with pytest.raises(InvalidInput, match="unknown device 'gpu'"):
        pick_device("gpu")


RENDERING = ["create", "emote", "bgm", "demo", "generate", "invert", "edit", "attention", "inpaint", "reinvert",
             "train portrait-mini", "train bgm-mini", "eval portrait-mini", "eval bgm-mini"]  # fmt: skip


@pytest.mark.parametrize("name", RENDERING)
def test_every_command_that_renders_takes_device(cli, name):
    code, out, _ = cli(*name.split(), "-h")
    assert code == 0 and "--device" in out


def test_training_refuses_a_device_it_cannot_use(tmp_path):
    """The recipes train on the CPU; on a CUDA build the parser accepts cuda, so the command refuses it."""
    from charforge.cli.mini_models import _check_run
    from charforge.errors import InvalidInput

    with pytest.raises(InvalidInput, match="CPU only"):
        _check_run(tmp_path / "run", False, "cuda")
    _check_run(tmp_path / "run", False, "cpu")
