"""`charforge train bgm-mini`: rebuild the default BGM model from procedural music.

Registered on the `train` group of commands_train, so every mini model trains under one verb.
Heavy imports happen inside the command so `charforge --help` stays fast.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from charforge.cli.commands_train import train_app
from charforge.errors import InvalidInput


@train_app.command("bgm-mini")
def train_bgm_mini(
    out: Annotated[Path, typer.Option(help="Run directory: checkpoint, rendered spectrograms, and the model in OUT/model.")],
    minutes: Annotated[float, typer.Option(help="Wall-clock training budget (VAE + UNet phases).")] = 45.0,
    resume: Annotated[bool, typer.Option(help="Continue from OUT's last checkpoint (or just re-export a finished run).")] = False,
    seed: Annotated[int, typer.Option(help="Seed of weights, data and noise.")] = 0,
) -> None:
    """Train the default BGM model (spectrograms of procedural music), then export a diffusers folder."""
    if minutes <= 0:
        raise InvalidInput(f"--minutes must be positive, got {minutes}")
    if out.exists() and not out.is_dir():
        raise InvalidInput(f"--out {out} exists and is not a directory")
    if not resume and (out / "checkpoint").exists():
        raise InvalidInput(f"{out} already holds a training run; pass --resume to continue it or choose another --out")
    from charforge.audio.bgm_model import train_bgm_mini as run

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    typer.echo(str(run(out, minutes=minutes, resume=resume, seed=seed)))
