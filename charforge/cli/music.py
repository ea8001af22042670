"""`charforge bgm`: a character's music for its current feeling, a glide to another, or music for a bare mood.

Three forms share one command because they are one idea (a mood -> music): with NAME the mood is the
character's current state and the file is cached in the workspace; NAME --to EMOTION=F ... glides
from the current state to that one; with --valence/--arousal nothing is stored and --out is required.
Arguments are checked before any model loads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from charforge.cli.options import DeviceOpt, JsonOpt, SeedOpt, WorkspaceOpt, finite, output_file, use_device
from charforge.cli.workspace import echo_json, get_character, open_forge
from charforge.emotion import EmotionState
from charforge.errors import InvalidInput
from charforge.files import atomic_write
from charforge.paths import validate_slug

app = typer.Typer()

DEFAULT_SECONDS = 10.0


def _plan_text(plan: Any) -> str:
    return f"{plan.prompt} ({plan.mode}, ~{plan.bpm:.0f} bpm)"


@app.command()
def bgm(
    ctx: typer.Context,
    name: Annotated[
        str | None, typer.Argument(metavar="NAME", help="Character (its current state sets the mood).")
    ] = None,
    emotions: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="EMOTION=INTENSITY", help="With --to: the state the music glides to, e.g. joy=0.9 fear=0.2."
        ),
    ] = None,
    to: Annotated[
        bool, typer.Option("--to", help="Glide from NAME's current state to the EMOTION=INTENSITY arguments.")
    ] = False,
    seconds: Annotated[
        float | None,
        typer.Option(
            parser=finite(0.0, 600.0, low_open=True),
            help=f"Length of the piece in seconds (default {DEFAULT_SECONDS:g}; not with --to).",
        ),
    ] = None,
    valence: Annotated[
        float | None, typer.Option(parser=finite(-1.0, 1.0), help="Without NAME: valence in [-1, 1] (sad .. happy).")
    ] = None,
    arousal: Annotated[
        float | None, typer.Option(parser=finite(-1.0, 1.0), help="Without NAME: arousal in [-1, 1] (calm .. excited).")
    ] = None,
    segments: Annotated[
        int, typer.Option(min=2, max=64, help="With --to: spectrogram tiles the transition spans (its length).")
    ] = 4,
    seed: SeedOpt = None,
    loop: Annotated[
        bool, typer.Option("--loop", help="A seamless loop of whole bars, at least --seconds long (rounded up).")
    ] = False,
    steps: Annotated[int, typer.Option(min=1, max=1000, help="Denoising steps per tile.")] = 20,
    sketch: Annotated[
        bool, typer.Option("--sketch/--no-sketch", help="Steer the model with a composed sketch of the mood "
                                                        "(default), or let it draw from the prompt alone.")
    ] = True,
    model: Annotated[
        Path | None, typer.Option(help="Without NAME: a BGM model folder (default: charforge-mini-bgm).")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(parser=output_file(".wav", ".flac", ".ogg"),
                     help="Write the music here, with a FILE.json sidecar; required without NAME."),
    ] = None,
    fmt: Annotated[
        str | None,
        typer.Option("--format", help="wav, ogg or flac (default: --out's suffix, else wav); loops in ogg/flac "
                                      "carry LOOPSTART/LOOPLENGTH tags."),
    ] = None,
    device: DeviceOpt = None,
    json_out: JsonOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Make background music for a character's mood (or for --valence/--arousal) and print where it is."""
    from charforge.character.bgm import check_format

    suffix = check_format(fmt or (out.suffix if out is not None else "wav"))
    if out is not None and out.suffix.lower() != suffix:
        raise InvalidInput(f"--format {fmt} does not match --out {out.name}")
    if name is None:
        if valence is None or arousal is None:
            raise InvalidInput("bgm needs a character NAME, or both --valence and --arousal (with --out)")
        if out is None:
            raise InvalidInput("bgm --valence/--arousal needs --out FILE.wav (nothing is stored without a character)")
        if to:
            raise InvalidInput("--to needs a character NAME (the transition starts from its current state)")
        use_device(device)
        _bgm_for_mood(valence, arousal, seconds, seed, loop, steps, model, out, json_out, sketch)
        return
    validate_slug(name)
    if valence is not None or arousal is not None or model is not None:
        raise InvalidInput("with a character NAME the mood comes from its state and the model from its settings; "
                           "drop --valence/--arousal/--model")  # fmt: skip
    if emotions and not to:
        raise InvalidInput(
            f"EMOTION=INTENSITY after NAME needs --to (a transition), e.g. bgm {name} --to {emotions[0]}"
        )
    if to and not emotions:
        raise InvalidInput("--to needs at least one EMOTION=INTENSITY, e.g. --to joy=0.9 fear=0.2")
    if to and seconds is not None:
        raise InvalidInput(
            "--seconds does not apply to a transition (its length is --segments tiles); drop one of them"
        )
    if to and loop:
        raise InvalidInput("--loop does not apply to a transition (it starts and ends in different moods)")
    if to and not sketch:
        raise InvalidInput("--no-sketch does not apply to a transition (transitions are not sketch-steered)")
    target = EmotionState.parse_tokens(emotions) if to else None
    use_device(device)
    with open_forge(ctx) as forge:
        character = get_character(forge, name)
        if target is not None:
            result = character.bgm_transition(target, segments=segments, seed=seed, steps=steps, format=suffix,
                                              progress=not json_out)  # fmt: skip
        else:
            result = character.bgm(seconds=seconds or DEFAULT_SECONDS, seed=seed, loop=loop, steps=steps,
                                   format=suffix, progress=not json_out, sketch=sketch)  # fmt: skip
    if out is not None:
        import soundfile as sf

        from charforge.audio.audiofile import sidecar, sidecar_path, write_json

        atomic_write(out, result.path.read_bytes())
        write_json(sidecar_path(out), sidecar(sf.info(str(out)).frames, result.sample_rate, result.loop,
                                              prompt=result.plan.prompt, loudness_lufs=result.plan.loudness_lufs))
    data = {"character": character.name, **result.to_dict(), **({"out": str(out)} if out else {})}
    if json_out:
        echo_json(data)
        return
    mood = (
        _plan_text(result.plan)
        if result.plan_to is None
        else f"{_plan_text(result.plan)} -> {_plan_text(result.plan_to)}"
    )
    typer.echo(f"{character.name}: {mood}, {result.seconds:.1f} s{', cached' if result.cached else ''}")
    typer.echo(str(out or result.path))


def _bgm_for_mood(valence: float, arousal: float, seconds: float | None, seed: int | None, loop: bool, steps: int,
                  model: Path | None, out: Path, json_out: bool, sketch: bool) -> None:  # fmt: skip
    from charforge.audio.audiofile import write_game_audio
    from charforge.character.bgm import bgm_for_mood

    plan, clip = bgm_for_mood(valence, arousal, seconds=seconds or DEFAULT_SECONDS, seed=0 if seed is None else seed,
                              loop=loop, model=model, steps=steps, progress=not json_out, sketch=sketch)  # fmt: skip
    write_game_audio(out, clip.samples, clip.sample_rate, clip.loop, prompt=plan.prompt,
                     loudness_lufs=plan.loudness_lufs)
    length = round(clip.samples.size / clip.sample_rate, 3)
    if json_out:
        echo_json({"path": str(out), "plan": plan.to_dict(), "seconds": length})
    else:
        typer.echo(f"{_plan_text(plan)}, {length:.1f} s -> {out}")
