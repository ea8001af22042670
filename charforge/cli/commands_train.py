"""`charforge train portrait-mini` and `charforge eval portrait-mini`: rebuild and measure the shipped default model.

Heavy imports (torch, diffusers) happen inside the commands so `charforge --help` stays fast.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Optional

import typer

from charforge.cli.main import app
from charforge.errors import InvalidInput

train_app = typer.Typer(help="Train charforge's own mini models from procedural data.", no_args_is_help=True)
eval_app = typer.Typer(help="Measure charforge's own mini models.", no_args_is_help=True)
app.add_typer(train_app, name="train")
app.add_typer(eval_app, name="eval")


def check_run_dir(out: Path, resume: bool) -> None:
    """A run directory is new, or an existing run that --resume continues: never silently overwritten."""
    if out.exists() and not out.is_dir():
        raise InvalidInput(f"--out {out} exists and is not a directory")
    if not resume and (out / "checkpoint").exists():
        raise InvalidInput(f"{out} already holds a training run; pass --resume to continue it or choose another --out")


@train_app.command("portrait-mini")
def train_portrait_mini(
    out: Annotated[Path, typer.Option(help="Run directory: checkpoint, logs, and the exported model in OUT/model.")],
    minutes: Annotated[float, typer.Option(help="Wall-clock training budget (both phases).")] = 55.0,
    resume: Annotated[bool, typer.Option(help="Continue from OUT's last checkpoint.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of weights, data order and noise.")] = 0,
    decoder_minutes: Annotated[float, typer.Option(
        help="Extra decoder-only fine-tune after the UNet phase (sharper pictures, same latent space).")] = 10.0,
    threads: Annotated[Optional[int], typer.Option(
        help="Torch threads (default: the run's, 2 for a new run); 1 when another job shares the cores.")] = None,
    init_from: Annotated[Optional[Path], typer.Option(
        help="Fine-tune this exported model folder (VAE kept, new caption words added) instead of training from scratch.")] = None,
) -> None:
    """Train the default portrait model from scratch (or resume, or fine-tune one), then export a diffusers folder."""
    if threads is not None and threads < 1:
        raise InvalidInput(f"--threads must be at least 1, got {threads}")
    if minutes <= 0 or decoder_minutes < 0:
        raise InvalidInput(f"--minutes must be positive and --decoder-minutes not negative, got {minutes}, {decoder_minutes}")
    check_run_dir(out, resume)
    if init_from is not None and not (init_from / "model_index.json").is_file():
        raise InvalidInput(f"--init-from {init_from} is not a diffusers model folder (no model_index.json)")
    from charforge.recipes.portrait_mini.recipe import finetune_portrait_mini, train_portrait_mini as run

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if init_from is not None or (resume and (out / "checkpoint" / "state.json").is_file() and _is_finetune(out)):
        typer.echo(str(finetune_portrait_mini(out, init_from, minutes, resume=resume, seed=seed, threads=threads)))
        return
    folder = run(out, minutes=minutes, resume=resume, seed=seed, decoder_minutes=decoder_minutes, threads=threads)
    typer.echo(str(folder))


def _is_finetune(out: Path) -> bool:
    state = json.loads((out / "checkpoint" / "state.json").read_text(encoding="utf-8"))
    return state.get("config", {}).get("vae_fraction") == 0.0


@eval_app.command("portrait-mini")
def eval_portrait_mini(
    model: Annotated[Optional[Path], typer.Option(help="Diffusers folder (default: the shipped model).")] = None,
    samples: Annotated[int, typer.Option(help="Generated samples to score.")] = 200,
    steps: Annotated[int, typer.Option(help="DDIM steps per sample.")] = 25,
    guidance: Annotated[float, typer.Option(help="Classifier-free guidance scale.")] = 5.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """Hair-colour and expression accuracy of generated samples on held-out prompts, and VAE PSNR."""
    if samples <= 0 or steps <= 0:
        raise InvalidInput("--samples and --steps must be positive")
    from charforge.recipes.portrait_mini.evaluate import evaluate

    report = evaluate(model, samples=samples, steps=steps, guidance=guidance)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    for key, value in report.items():
        typer.echo(f"{key}: {value}")
