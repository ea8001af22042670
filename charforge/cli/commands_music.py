"""`charforge bgm`: a character's music for its current feeling, or music for a bare valence/arousal.

Two forms share one command because they are one idea (a mood -> music): with NAME the mood is the
character's current state and the file is cached in the workspace; with --valence/--arousal nothing is
stored and --out is required. Arguments are checked before any model loads.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated

import typer

from charforge.cli.main import app
from charforge.cli.workspace import JsonOpt, WorkspaceOpt, echo_json, open_forge
from charforge.emotion import EmotionState
from charforge.errors import InvalidInput
from charforge.paths import validate_slug

_AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")


def _check_out(out: Path | None) -> None:
    if out is None:
        return
    if out.suffix.lower() not in _AUDIO_SUFFIXES:
        raise InvalidInput(f"--out must end in one of {', '.join(_AUDIO_SUFFIXES)}, got {out.name}")
    if not out.parent.is_dir():
        raise InvalidInput(f"--out folder {out.parent} does not exist")


@app.command()
def bgm(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="Character (its current state sets the mood).")] = None,
    seconds: Annotated[float, typer.Option(help="Length of the piece in seconds.")] = 10.0,
    valence: Annotated[float | None, typer.Option(help="Without NAME: valence in [-1, 1] (sad .. happy).")] = None,
    arousal: Annotated[float | None, typer.Option(help="Without NAME: arousal in [-1, 1] (calm .. excited).")] = None,
    to: Annotated[list[str] | None, typer.Option("--to", metavar="EMOTION=INTENSITY",
                                                 help="With NAME: glide from the current state to this one.")] = None,
    segments: Annotated[int, typer.Option(help="With --to: spectrogram tiles the transition spans.")] = 4,
    seed: Annotated[int | None, typer.Option(help="Noise seed (default: the character's seed, or 0).")] = None,
    loop: Annotated[bool, typer.Option("--loop", help="Cut to whole bars with a seamless seam.")] = False,
    steps: Annotated[int, typer.Option(help="Denoising steps per tile.")] = 20,
    model: Annotated[Path | None, typer.Option(help="Without NAME: a BGM model folder (default: charforge-mini-bgm).")] = None,
    out: Annotated[Path | None, typer.Option(
        help="Write the music here (.wav/.flac/.ogg) with a .json sidecar; required without NAME.")] = None,
    fmt: Annotated[str | None, typer.Option("--format", help="wav, ogg or flac (default: --out's suffix, else wav); "
                                            "loops in ogg/flac carry LOOPSTART/LOOPLENGTH tags.")] = None,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Make background music for a character's mood (or for --valence/--arousal) and print where it is."""
    _check_out(out)
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
        from charforge.audio.audiofile import write_game_audio
        from charforge.character.bgm import bgm_for_mood

        plan, clip = bgm_for_mood(valence, arousal, seconds=seconds, seed=0 if seed is None else seed, loop=loop,
                                  model=model, steps=steps, progress=not json_out)
        write_game_audio(out, clip.samples, clip.sample_rate, clip.loop, prompt=plan.prompt,
                         loudness_lufs=plan.loudness_lufs)
        data = {"path": str(out), "plan": plan.to_dict(), "seconds": round(clip.samples.size / clip.sample_rate, 3)}
        if json_out:
            echo_json(data)
        else:
            typer.echo(f"{plan.prompt} ({plan.mode}, ~{plan.bpm:.0f} bpm) -> {out}")
        return
    validate_slug(name)
    if valence is not None or arousal is not None or model is not None:
        raise InvalidInput("with a character NAME the mood comes from its state and the model from its settings; "
                           "drop --valence/--arousal/--model")
    target = EmotionState.parse_tokens(to) if to else None
    with open_forge(ctx, workspace) as forge:
        character = forge.get(name)
        if target is not None:
            result = character.bgm_transition(target, segments=segments, seed=seed, steps=steps, format=suffix,
                                              progress=not json_out)
        else:
            result = character.bgm(seconds=seconds, seed=seed, loop=loop, steps=steps, format=suffix,
                                   progress=not json_out)
    if out is not None:
        import soundfile as sf

        from charforge.audio.audiofile import sidecar, sidecar_path, write_json

        shutil.copyfile(result.path, out)
        info = sidecar(sf.info(str(out)).frames, result.sample_rate, result.loop, prompt=result.plan.prompt,
                       loudness_lufs=result.plan.loudness_lufs)
        write_json(sidecar_path(out), info)
    data = {"character": character.name, **result.to_dict(), **({"out": str(out)} if out else {})}
    if json_out:
        echo_json(data)
        return
    mood = result.plan.prompt if result.plan_to is None else f"{result.plan.prompt} -> {result.plan_to.prompt}"
    typer.echo(f"{character.name}: {mood} ({result.seconds:.1f} s{', cached' if result.cached else ''})")
    typer.echo(str(out or result.path))
