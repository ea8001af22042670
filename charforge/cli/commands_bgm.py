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
    seeds: Annotated[int, typer.Option(help="Held-out seeds per grid cell and lead (9001, 9002, ...).")] = 4,
    leads: Annotated[str, typer.Option(help="Comma-separated leads rendered in every cell.")] = "piano,pluck",
    seconds: Annotated[float, typer.Option(help="Length of each clip.")] = 10.0,
    steps: Annotated[int, typer.Option(help="DDIM steps per tile.")] = 20,
    guidance: Annotated[float, typer.Option(help="Classifier-free guidance scale.")] = 5.0,
    vae: Annotated[int, typer.Option(help="Also check mode survival through the VAE on this many spectrograms.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print figures, tables and per-clip rows as JSON.")] = False,
) -> None:
    """Mode per valence, tempo per arousal, loudness: the #17 grid heard by independent listeners."""
    names = tuple(x.strip() for x in leads.split(",") if x.strip())
    if seeds < 1 or steps < 1 or seconds <= 0 or vae < 0 or not names:
        raise InvalidInput("--seeds and --steps must be positive, --seconds > 0, --vae >= 0, --leads not empty")
    if not (model / "model_index.json").is_file():
        raise InvalidInput(f"{model} is not a diffusers model folder (no model_index.json)")
    from charforge.recipes.bgm_mini.dataset import LEADS
    from charforge.recipes.bgm_mini.evaluate import evaluate_bgm, format_report, vae_mode_survival

    if not set(names) <= set(LEADS):
        raise InvalidInput(f"--leads must be among {', '.join(LEADS)}, got {leads}")
    report = evaluate_bgm(model, seeds=seeds, leads=names, seconds=seconds, steps=steps, guidance=guidance)
    if vae:
        report["vae"] = vae_mode_survival(model, samples=vae)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    typer.echo(format_report(report))
    if vae:
        typer.echo(f"VAE: {report['vae']}")
