"""`charforge emote` (record a state and render or reuse its CG) and `charforge explain` (what it becomes).

Arguments are validated before the workspace is opened or a model is loaded, so bad input exits 2
with one stderr line and changes nothing. `explain` renders nothing and loads no model.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from charforge.character.cache import cached_picture
from charforge.cli.options import DeviceOpt, JsonOpt, WorkspaceOpt, use_device
from charforge.cli.workspace import echo_json, get_character, open_forge
from charforge.emotion import EmotionState
from charforge.errors import InvalidInput
from charforge.paths import validate_slug
from charforge.store import EmotionSource

app = typer.Typer()

EmotionsArg = Annotated[
    list[str] | None,
    typer.Argument(metavar="EMOTION=INTENSITY", help="e.g. joy=0.8 fear=0.2 (aliases like happy work)."),
]
NameArg = Annotated[str, typer.Argument(metavar="NAME", help="Character name.")]


def parse_state(name: str, emotions: list[str] | None, verb: str) -> EmotionState:
    validate_slug(name)
    if not emotions:
        raise InvalidInput(f"{verb} needs at least one EMOTION=INTENSITY, e.g. joy=0.8 (neutral=1 for calm)")
    return EmotionState.parse_tokens(emotions)


def _emotion_json(character: Any, entry: Any) -> dict[str, Any]:
    vad = entry.state.vad()
    return {
        "character": character.name,
        "state": entry.state.components(),
        "intensities": entry.state.intensities(),
        "dominant": entry.state.dominant,
        "vad": vad._asdict(),
        "state_hash": entry.state_hash,
        "source": entry.source,
        "version": entry.version,
        "created_at": entry.created_at.isoformat(),
    }


@app.command()
def emote(
    ctx: typer.Context,
    name: NameArg,
    emotions: EmotionsArg = None,
    no_render: Annotated[bool, typer.Option("--no-render", help="Only record the state; draw nothing.")] = False,
    device: DeviceOpt = None,
    json_out: JsonOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Give a character an emotion state: record it and render (or reuse) its CG, printing the path."""
    state = parse_state(name, emotions, "emote")
    use_device(device)
    with open_forge(ctx) as forge:
        character = get_character(forge, name)
        # A state drawn before is found with SQLite alone; only a new one pays for torch and the model.
        result = None if no_render else cached_picture(character, state) or character.feel(state, record=False)
        entry = character.record_emotion(state, source=EmotionSource.CLI)
    data = _emotion_json(character, entry)
    if result is not None:
        data.update(path=str(result.path), hash=result.key, rendered_state=result.state.components(),
                    cached=result.cached)  # fmt: skip
    if json_out:
        echo_json(data)
        return
    vad = entry.state.vad()
    typer.echo(
        f"{character.name} feels {entry.state} (valence {vad.valence:+.2f}, arousal {vad.arousal:+.2f}, "
        f"dominance {vad.dominance:+.2f}); recorded as version {entry.version}"
    )
    if result is not None:
        typer.echo(str(result.path))


@app.command()
def explain(
    ctx: typer.Context,
    name: NameArg,
    emotions: EmotionsArg = None,
    json_out: JsonOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Show what conditioning a state becomes for a character (phrases, attention weights, edit strengths)."""
    state = parse_state(name, emotions, "explain")
    with open_forge(ctx) as forge:
        character = get_character(forge, name)
        cond = character.explain(state)
    data = {"character": character.name, "requested": state.components(), **cond.to_dict()}
    if json_out:
        echo_json(data)
        return
    typer.echo(f"{character.name}: {state} -> quantised {cond.state}")
    typer.echo(f"conditioning: {cond.describe()}")
    for term in cond.terms:
        emotions_text = "+".join(term.emotions)
        typer.echo(
            f"  [{emotions_text} {term.intensity:.2f}] {term.words!r} attention x{term.attention:.2f}, "
            f"edit strength {term.strength:.3f}"
        )
    if cond.composed:  # one edit per emotion, their changes added up
        for branch in cond.branches():
            typer.echo(f"prompt (strength {branch.strength:.3f}): {branch.prompt}")
    else:
        typer.echo(f"prompt: {cond.target_prompt}")
    vad = state.vad()
    typer.echo(f"valence {vad.valence:+.2f}, arousal {vad.arousal:+.2f}, dominance {vad.dominance:+.2f}")
