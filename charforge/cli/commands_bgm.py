"""`charforge train bgm-mini` and `charforge eval bgm-mini`: rebuild and measure the default BGM model.

Registered on the `train`/`eval` groups of commands_train, so every mini model shares the verbs.
Heavy imports happen inside the command so `charforge --help` stays fast.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer

from charforge.cli.commands_train import check_run_dir, eval_app, train_app
from charforge.errors import InvalidInput


@train_app.command("bgm-mini")
def train_bgm_mini(
    out: Annotated[Path, typer.Option(help="Run directory: checkpoint, rendered spectrograms, and the model in OUT/model.")],
    minutes: Annotated[float, typer.Option(help="Wall-clock training budget (VAE + UNet phases).")] = 45.0,
    resume: Annotated[bool, typer.Option(help="Continue from OUT's last checkpoint (or just re-export a finished run).")] = False,
    seed: Annotated[int, typer.Option(help="Seed of weights, data and noise.")] = 0,
    threads: Annotated[int, typer.Option(help="Torch threads (1 when another training shares the cores).")] = 1,
) -> None:
    """Train the default BGM model (spectrograms of procedural music), then export a diffusers folder."""
    if minutes <= 0 or threads < 1:
        raise InvalidInput(f"--minutes must be positive and --threads at least 1, got {minutes}, {threads}")
    check_run_dir(out, resume)
    from charforge.recipes.bgm_mini.train import train_bgm_mini as run

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    typer.echo(str(run(out, minutes=minutes, resume=resume, seed=seed, threads=threads)))


@eval_app.command("bgm-mini")
def eval_bgm_mini(
    model: Annotated[Path, typer.Option(help="Diffusers folder of a BGM model (e.g. OUT/model of a training run).")],
    clips: Annotated[int, typer.Option(help="Generated clips, spread over the four valence/arousal corners.")] = 40,
    steps: Annotated[int, typer.Option(help="DDIM steps per clip.")] = 20,
    guidance: Annotated[float, typer.Option(help="Classifier-free guidance scale.")] = 5.0,
    transitions: Annotated[int, typer.Option(help="Also measure this many sad<->happy transitions (0: none).")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures (and per-clip rows) as JSON.")] = False,
) -> None:
    """Mode accuracy against the sign of valence and tempo gap between high and low arousal."""
    if clips < 4 or steps < 1 or transitions < 0 or transitions == 1:
        raise InvalidInput("--clips must be at least 4, --steps positive and --transitions 0 or at least 2")
    if not (model / "model_index.json").is_file():
        raise InvalidInput(f"{model} is not a diffusers model folder (no model_index.json)")
    from charforge.recipes.bgm_mini.evaluate import evaluate_bgm, evaluate_transitions

    report = evaluate_bgm(model, clips=clips, steps=steps, guidance=guidance)
    if transitions:
        report["transitions"] = evaluate_transitions(model, count=transitions, steps=steps, guidance=guidance)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    for key, value in report.items():
        if isinstance(value, dict):
            value = {k: v for k, v in value.items() if k != "rows"}
        if key != "rows":
            typer.echo(f"{key}: {value}")
