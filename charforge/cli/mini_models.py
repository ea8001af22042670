"""`charforge train|eval portrait-mini|bgm-mini`: rebuild and measure the mini models charforge ships.

Not to be confused with `charforge bgm` (charforge.cli.music), which makes a character's music. The
recipes (torch, diffusers) are imported inside the commands, after the arguments are checked.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from charforge.cli.options import (
    SEED_MAX,
    DeviceOpt,
    GuidanceOpt,
    JsonOpt,
    WorkspaceOpt,
    finite,
    output_folder,
    use_device,
)
from charforge.errors import InvalidInput

train_app = typer.Typer()
eval_app = typer.Typer()

RunDirOpt = Annotated[
    Path,
    typer.Option(parser=output_folder(parent_must_exist=False),
                 help="Run directory: checkpoint, logs, and the exported model in OUT/model."),
]  # fmt: skip
MinutesOpt = Annotated[
    float,
    typer.Option(
        parser=finite(0.0, low_open=True),
        help="Wall-clock budget of the whole command (data, encoding, every phase, export); with --resume, "
        "also the run's total training time that the phases' shares are taken of.",
    ),
]
ResumeOpt = Annotated[bool, typer.Option(help="Continue from OUT's last checkpoint.")]
TrainSeedOpt = Annotated[int, typer.Option(min=0, max=SEED_MAX, help="Seed of weights, data order and noise.")]
ThreadsOpt = Annotated[int, typer.Option(min=1, help="Torch threads (1 when another job shares the cores).")]


def _check_run(out: Path, resume: bool, device: str | None) -> None:
    """A run directory is new, or an existing run that --resume continues: never silently overwritten."""
    if device not in (None, "cpu"):
        raise InvalidInput(
            f"training runs on the CPU only (the recipes do not move their models), got --device {device}"
        )
    if not resume and (out / "checkpoint").exists():
        raise InvalidInput(f"{out} already holds a training run; pass --resume to continue it or choose another --out")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")


def print_report(report: dict[str, Any], as_json: bool) -> None:
    """JSON for scripts; otherwise a table of the figures (per-clip rows are left to --json)."""
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    table = Table("figure", "value")

    def add(prefix: str, data: dict[str, Any]) -> None:
        for key, value in data.items():
            if key == "rows":
                continue
            if isinstance(value, dict):
                add(f"{prefix}{key}.", value)
            else:
                table.add_row(f"{prefix}{key}", f"{value:.4g}" if isinstance(value, float) else str(value))

    add("", report)
    Console().print(table)


@train_app.command("portrait-mini")
def train_portrait_mini(
    out: RunDirOpt,
    minutes: MinutesOpt = 55.0,
    resume: ResumeOpt = False,
    seed: TrainSeedOpt = 0,
    decoder_minutes: Annotated[
        float,
        typer.Option(
            parser=finite(0.0),
            help="The last minutes of --minutes go to a decoder-only fine-tune (sharper pictures, same latent space).",
        ),
    ] = 0.0,
    threads: Annotated[
        int | None,
        typer.Option(
            min=1, help="Torch threads (default: the run's, 2 for a new run); 1 when another job shares the cores."
        ),
    ] = None,
    init_from: Annotated[
        Path | None,
        typer.Option(help="Fine-tune this exported model folder (VAE kept, new caption words added) instead."),
    ] = None,
    face_mix: Annotated[
        str | None,
        typer.Option(
            help="A new fine-tune's shares of calm, one-, two- and three-emotion faces, e.g. 0.04,0.34,0.5,0.12 "
            "(default: the renderer's 0.06,0.52,0.32,0.1)."
        ),
    ] = None,
    lr: Annotated[
        float | None,
        typer.Option(parser=finite(0.0, 1.0, low_open=True), help="A new fine-tune's learning rate (default 4e-4)."),
    ] = None,
    emphasis: Annotated[
        str | None,
        typer.Option(
            help="A new fine-tune's relative weights of emotions in its faces, e.g. trust=3,anticipation=1.5 "
            "(default: 1 each)."
        ),
    ] = None,
    decoder_only: Annotated[
        bool,
        typer.Option(
            "--decoder-only",
            help="A new fine-tune's only part is the VAE's decoder, face-weighted (the latent space, UNet and "
            "inversions stay valid).",
        ),
    ] = False,
    locality: Annotated[
        float,
        typer.Option(
            parser=finite(0.0, 100.0),
            help="With --decoder-only: weight of a term that keeps a change of the face's latents out of the "
            "decoded pixels around it (default 0: none).",
        ),
    ] = 0.0,
    device: DeviceOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Train the default portrait model from scratch (or resume, or fine-tune one), then export a diffusers folder."""
    started = time.monotonic()
    _check_run(out, resume, device)
    if decoder_minutes >= minutes / 2:
        raise InvalidInput(f"--decoder-minutes {decoder_minutes:g} leaves too little of --minutes {minutes:g}")
    if init_from is not None and not (init_from / "model_index.json").is_file():
        raise InvalidInput(f"--init-from {init_from} is not a diffusers model folder (no model_index.json)")
    if (face_mix is not None or lr is not None or emphasis is not None or decoder_only or locality) and (
        init_from is None
    ):
        raise InvalidInput(
            "--face-mix, --lr, --emphasis, --decoder-only and --locality set up a new fine-tune: give --init-from"
        )
    mix = None if face_mix is None else _face_mix(face_mix)
    weights = None if emphasis is None else _emphasis(emphasis)
    from charforge.recipes.portrait_mini.recipe import finetune_portrait_mini, is_finetune_run
    from charforge.recipes.portrait_mini.recipe import train_portrait_mini as run
    from charforge.recipes.training.budget import Budget

    if init_from is not None or (resume and is_finetune_run(out)):
        from charforge.recipes.portrait_mini.population import FACE_MIX
        from charforge.recipes.portrait_mini.recipe import FINETUNE_LR

        folder = finetune_portrait_mini(
            out, init_from, minutes, resume=resume, seed=seed, threads=threads,
            budget=Budget.minutes(minutes, started), face_mix=mix or FACE_MIX, lr=lr or FINETUNE_LR,
            emphasis=weights, decoder_only=decoder_only, locality=locality,
        )  # fmt: skip
        typer.echo(str(folder))
        return
    folder = run(out, minutes=minutes, resume=resume, seed=seed, decoder_minutes=decoder_minutes, threads=threads,
                 budget=Budget.minutes(minutes, started))  # fmt: skip
    typer.echo(str(folder))


def _face_mix(text: str) -> tuple[float, float, float, float]:
    try:
        shares = tuple(float(x) for x in text.split(","))
    except ValueError:
        shares = ()
    if len(shares) != 4 or not all(math.isfinite(x) and x >= 0 for x in shares) or sum(shares) <= 0:
        raise InvalidInput(f"--face-mix {text!r}: give four non-negative shares, e.g. 0.04,0.34,0.5,0.12")
    return shares  # type: ignore[return-value]


def _emphasis(text: str) -> dict[str, float]:
    from charforge.recipes.portrait_mini.face import EMOTIONS

    weights: dict[str, float] = {}
    for item in text.split(","):
        name, _, value = item.partition("=")
        name = name.strip()
        try:
            weight = float(value)
        except ValueError:
            weight = math.nan
        if name not in EMOTIONS or not math.isfinite(weight) or weight <= 0:
            raise InvalidInput(
                f"--emphasis {text!r}: give emotion=weight pairs with positive weights, "
                f"emotions from {', '.join(EMOTIONS)}"
            )
        weights[name] = weight
    return weights


@train_app.command("portrait-mini-fast")
def train_portrait_mini_fast(
    out: RunDirOpt,
    minutes: MinutesOpt = 90.0,
    resume: ResumeOpt = False,
    seed: TrainSeedOpt = 0,
    teacher: Annotated[
        Path | None, typer.Option(help="Diffusers folder of the teacher (default: the shipped portrait-mini).")
    ] = None,
    vae: Annotated[
        Path | None,
        typer.Option(
            help="Ship this VAE folder in the student instead of the teacher's (same latent space), e.g. the "
            "tiny autoencoder from `charforge train portrait-mini-tiny-vae`."
        ),
    ] = None,
    threads: ThreadsOpt = 1,
    device: DeviceOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Distil portrait-mini into a 4-step student (latent consistency distillation), then export it."""
    started = time.monotonic()
    _check_run(out, resume, device)
    _check_model_folder(teacher)
    if vae is not None and not (vae / "config.json").is_file():
        raise InvalidInput(f"--vae {vae} is not a diffusers VAE folder (no config.json)")
    if resume and not (out / "checkpoint").exists():
        raise InvalidInput(f"{out} holds no run to resume")
    from charforge.recipes.portrait_mini.distill import distill_portrait_mini
    from charforge.recipes.training.budget import Budget

    typer.echo(str(distill_portrait_mini(out, minutes=minutes, resume=resume, teacher=teacher, seed=seed,
                                         threads=threads, budget=Budget.minutes(minutes, started),
                                         vae=vae)))  # fmt: skip


@train_app.command("portrait-mini-tiny-vae")
def train_portrait_mini_tiny_vae(
    out: RunDirOpt,
    minutes: MinutesOpt = 50.0,
    resume: ResumeOpt = False,
    teacher: Annotated[
        Path | None,
        typer.Option(help="Diffusers folder whose VAE is distilled (default: the shipped portrait-mini)."),
    ] = None,
    face_weight: Annotated[
        float,
        typer.Option(parser=finite(1.0, 20.0), help="How much more a face pixel counts in the decoder's loss."),
    ] = 1.0,
    threads: ThreadsOpt = 1,
    device: DeviceOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Distil portrait-mini's VAE into a tiny autoencoder (diffusers' AutoencoderTiny), then export it."""
    _check_run(out, resume, device)
    _check_model_folder(teacher)
    if resume and not (out / "checkpoint").exists():
        raise InvalidInput(f"{out} holds no run to resume")
    from charforge.models import default_model_path
    from charforge.recipes.portrait_mini.tiny_vae import distill_tiny_vae

    teacher_vae = (teacher or default_model_path()) / "vae"
    typer.echo(str(distill_tiny_vae(teacher_vae, out, minutes, threads=threads, face_weight=face_weight)))


@train_app.command("bgm-mini")
def train_bgm_mini(
    out: RunDirOpt,
    minutes: MinutesOpt = 45.0,
    resume: ResumeOpt = False,
    seed: TrainSeedOpt = 0,
    threads: ThreadsOpt = 1,
    device: DeviceOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Train the default BGM model (spectrograms of procedural music), then export a diffusers folder."""
    started = time.monotonic()
    _check_run(out, resume, device)
    from charforge.recipes.bgm_mini.train import train_bgm_mini as run
    from charforge.recipes.training.budget import Budget

    typer.echo(str(run(out, minutes=minutes, resume=resume, seed=seed, threads=threads,
                       budget=Budget.minutes(minutes, started))))


@eval_app.command("portrait-mini")
def eval_portrait_mini(
    model: Annotated[
        Path | None,
        typer.Option(help="Diffusers folder (default: the shipped model; e.g. charforge/models/portrait-mini-fast)."),
    ] = None,
    samples: Annotated[int, typer.Option(min=1, help="Generated samples to score.")] = 200,
    steps: Annotated[
        int, typer.Option(min=1, max=1000, help="Steps per sample: DDIM, or LCM for a few-step student (use 4).")
    ] = 25,
    guidance: GuidanceOpt = 5.0,
    device: DeviceOpt = None,
    as_json: JsonOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Hair-colour and expression accuracy of generated samples on held-out prompts, and VAE PSNR."""
    _check_model_folder(model)
    use_device(device)
    from charforge.recipes.portrait_mini.evaluate import evaluate

    print_report(evaluate(model, samples=samples, steps=steps, guidance=guidance), as_json)


@eval_app.command("bgm-mini")
def eval_bgm_mini(
    model: Annotated[
        Path | None, typer.Option(help="Diffusers folder of a BGM model (default: the shipped one).")
    ] = None,
    seeds: Annotated[int, typer.Option(min=1, help="Held-out seeds per grid cell and lead (9001, 9002, ...).")] = 4,
    leads: Annotated[str, typer.Option(help="Comma-separated leads rendered in every cell.")] = "piano,pluck",
    seconds: Annotated[
        float, typer.Option(parser=finite(0.0, 300.0, low_open=True), help="Length of each clip.")
    ] = 10.0,
    steps: Annotated[int, typer.Option(min=1, max=1000, help="DDIM steps per tile.")] = 20,
    guidance: GuidanceOpt = 5.0,
    vae: Annotated[int, typer.Option(min=0, help="Also check mode survival through the VAE on this many images.")] = 0,
    sketch: Annotated[
        bool, typer.Option("--sketch/--no-sketch", help="Render through the default sketch-steered path, or "
                                                        "let the model draw from the prompt alone.")
    ] = True,
    device: DeviceOpt = None,
    as_json: JsonOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Mode per valence, tempo per arousal, loudness: issue #17's grid heard by independent listeners."""
    names = tuple(x.strip() for x in leads.split(",") if x.strip())
    from charforge.recipes.bgm_mini.dataset import LEADS

    if not names or not set(names) <= set(LEADS):
        raise InvalidInput(f"--leads must be among {', '.join(LEADS)}, got {leads!r}")
    _check_model_folder(model)
    use_device(device)
    from charforge.engine.loading import default_bgm_model_path
    from charforge.recipes.bgm_mini.evaluate import evaluate_bgm, format_report, vae_mode_survival

    model = default_bgm_model_path() if model is None else model
    _check_model_folder(model)
    report = evaluate_bgm(model, seeds=seeds, leads=names, seconds=seconds, steps=steps, guidance=guidance,
                          sketch=sketch)  # fmt: skip
    if vae:
        report["vae"] = vae_mode_survival(model, samples=vae)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    typer.echo(format_report(report))
    if vae:
        typer.echo(f"VAE: {report['vae']}")


def _check_model_folder(model: Path | None) -> None:
    if model is not None and not (model / "model_index.json").is_file():
        raise InvalidInput(f"{model} is not a diffusers model folder (no model_index.json)")
