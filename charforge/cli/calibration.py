"""`charforge calibrate NAME` and `charforge eval emotions`: measure how a model draws emotion intensity.

`calibrate portrait-mini` measures the shipped default model (or `--model DIR`, another folder of the
same kind) with the emotion judge on held-out characters and stores the result beside the model;
`calibrate CHARACTER` measures that character's model on the character itself, by how much its face
changes (no judge needed), and stores it in the workspace, where it takes precedence for those weights.
Heavy imports stay inside the commands.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer

from charforge.cli.options import JsonOpt, WorkspaceOpt
from charforge.cli.workspace import echo_json, get_character, open_forge
from charforge.errors import InvalidInput

MINI = "portrait-mini"

app = typer.Typer()
eval_app = typer.Typer()
_MODES = ("edit", "fast", "plain")


def _check(mode: str, characters: int, steps: int, workers: int = 1) -> None:
    if workers < 1:
        raise InvalidInput(f"--workers must be at least 1, got {workers}")
    if mode not in _MODES:
        raise InvalidInput(f"--mode must be one of {', '.join(_MODES)}, got {mode!r}")
    if characters < 1 or steps < 1:
        raise InvalidInput("--characters and --steps must be at least 1")


def _mini_folder(model: Path | None) -> Path:
    from charforge.engine.loading import default_model_path

    folder = Path(model) if model is not None else default_model_path()
    if not (folder / "model_index.json").is_file():
        raise InvalidInput(f"{folder} is not a diffusers model folder (no model_index.json)")
    return folder


def _student_folder(folder: Path) -> Path:
    from charforge.models import student_path

    student = student_path(folder)
    if student is None:
        raise InvalidInput(f"no few-step student is installed for {folder}")
    return student


@app.command("calibrate")
def calibrate(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help=f"'{MINI}' (the default model) or a character's name.")],
    model: Annotated[Path | None, typer.Option(help=f"With '{MINI}': another folder of that model.")] = None,
    characters: Annotated[int, typer.Option(help=f"With '{MINI}': held-out characters to measure on.")] = 3,
    steps: Annotated[int, typer.Option(help="Sampling steps of each picture.")] = 20,
    workers: Annotated[int, typer.Option(help=f"With '{MINI}': processes drawing characters side by side.")] = 1,
    judged: Annotated[
        bool,
        typer.Option(
            "--judge/--face-change",
            help=f"With '{MINI}': measure by the calibration judge (not the evaluation's), or by face change.",
        ),
    ] = True,
    fast: Annotated[
        bool, typer.Option(help=f"With '{MINI}': measure its few-step student's edits; stored beside the student.")
    ] = False,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Measure once how strongly each emotion shows at each edit strength; store it beside the model."""
    _check("edit", characters, steps, workers)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    from charforge.emotion.calibration import save_calibration, workspace_relpath
    from charforge.recipes.portrait_mini.emotion_eval import calibrate as measure
    from charforge.recipes.portrait_mini.emotion_eval import calibrate_mini, calibration_cast, character_sitting

    if name == MINI:
        from charforge.engine.loading import weights_hash

        folder = _mini_folder(model)
        target = _student_folder(folder) if fast else folder  # the calibration is of its weights, stored there
        result = calibrate_mini(
            weights_hash(str(target)) or "",
            calibration_cast(characters),
            str(folder),
            steps,
            workers=min(workers, characters),
            judged=judged,
            mode="fast" if fast else "edit",
        )
        path = save_calibration(result, target)
    else:
        if model is not None or fast:
            raise InvalidInput("--model and --fast only apply to portrait-mini; a character is measured with its "
                               "own model")  # fmt: skip
        from charforge.character.expressions import character_table
        from charforge.character.identity import current_model_hash

        with open_forge(ctx) as forge:
            character = get_character(forge, name)
            table = character_table(character)
            model_hash = current_model_hash(character)
            result = measure(model_hash, iter([character_sitting(character, table)]), table, None)
            path = forge.workspace.write_atomic(
                workspace_relpath(model_hash), json.dumps(result.model_dump(), indent=1).encode("utf-8")
            )
    if json_out:
        echo_json({"path": str(path), **result.model_dump()})
        return
    typer.echo(f"calibration ({result.method}) written to {path}")
    for emotion, curve in result.emotions.items():
        chain = result.chain(emotion)
        steps_text = ", ".join(f"{p.strength:g}={level:.2f}" for level, p in chain)
        typer.echo(f"  {emotion:13s} calm {curve.calm:.3f}; strength=perceived {steps_text}")


@eval_app.command("emotions")
def eval_emotions(
    model: Annotated[Path | None, typer.Option(help="portrait-mini folder (default: the shipped model).")] = None,
    mode: Annotated[
        str, typer.Option(help="edit: as `feel` draws (invert + edit); fast: the same edits drawn "
                         "by the model's few-step student; plain: generations of the prompt.")
    ] = "edit",
    characters: Annotated[int, typer.Option(help="Held-out characters.")] = 6,
    steps: Annotated[int, typer.Option(help="Sampling steps of each picture.")] = 20,
    calibrated: Annotated[bool, typer.Option(help="Use the model folder's calibration, if it has one.")] = True,
    workers: Annotated[int, typer.Option(help="Processes drawing characters side by side (one thread each).")] = 1,
    sheet: Annotated[
        Path | None, typer.Option(help="Also write a contact sheet (calm, 0.3/0.6/1.0, mixtures) here.")
    ] = None,
    keep: Annotated[Path | None, typer.Option(help="Keep every drawn picture here (one .npz per character).")] = None,
    from_pictures: Annotated[
        Path | None, typer.Option(help="Judge the pictures an earlier run kept (--keep) instead of drawing.")
    ] = None,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Intensity sweeps (8 emotions x 0.1..1.0) and two-emotion mixtures, read by the emotion judge."""
    _check(mode, characters, steps, workers)
    if from_pictures is not None and not from_pictures.is_dir():
        raise InvalidInput(f"--from-pictures {from_pictures} is not a folder")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    from charforge.emotion.calibration import load_calibration
    from charforge.recipes.portrait_mini.emotion_eval import judge_sweep, load_parts, sweep

    folder = _mini_folder(model)
    calibration = load_calibration(_student_folder(folder) if mode == "fast" else folder) if calibrated else None
    if from_pictures is not None:
        try:
            parts = load_parts(str(from_pictures))
        except FileNotFoundError as error:
            raise InvalidInput(str(error)) from None
        report = judge_sweep(parts, mode, steps, calibration is not None, sheet=str(sheet) if sheet else None)
    else:
        report = sweep(
            mode,
            characters,
            str(folder),
            steps,
            calibration,
            workers=max(1, min(workers, characters)),
            sheet=str(sheet) if sheet else None,
            keep=str(keep) if keep else None,
        )
    if json_out:
        echo_json(report)
        return
    typer.echo(
        f"{report['characters']} held-out characters, mode {mode}, {steps} steps, "
        f"{'calibrated' if report['calibrated'] else 'uncalibrated'}; judge readings by requested intensity"
    )
    typer.echo(
        f"{'emotion':13s} {'calm':>5s} " + " ".join(f"{v:>5g}" for v in report["levels"]) + "  spearman levels top@.6+"
    )
    for emotion, row in report["emotions"].items():
        means = " ".join(f"{m:5.2f}" for m in row["mean_by_level"])
        typer.echo(
            f"{emotion:13s} {row['calm']:5.2f} {means}  {row['spearman_means']:8.2f} {row['distinct_levels']:6d} "
            f"{row['recognised_at_0.6_plus']:6.2f}"
        )
    mix = report["mixtures"]
    typer.echo(
        f"mixtures: {mix['count']}, both requested in the judge's top two {mix['both_in_top_two']:.1%}, "
        f"an unrequested emotion on top {mix['unrequested_on_top']:.1%}"
    )
