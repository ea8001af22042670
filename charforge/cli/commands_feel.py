"""Emotion and identity commands: emote (record + render), explain, mask, reinvert, inpaint.

Arguments are validated before the workspace is opened or a model is loaded, so bad input exits 2
with one stderr line and changes nothing. Model-running modules are imported inside the commands so
`charforge --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from charforge.cli.commands_engine import _open_image
from charforge.cli.main import app
from charforge.cli.workspace import JsonOpt, WorkspaceOpt, echo_json, open_forge
from charforge.emotion import EmotionState
from charforge.errors import InvalidInput
from charforge.paths import validate_slug
from charforge.store import EmotionSource

EmotionsArg = Annotated[
    list[str] | None,
    typer.Argument(metavar="EMOTION=INTENSITY...", help="e.g. joy=0.8 fear=0.2 (aliases like happy work)."),
]


def _state(name: str, emotions: list[str] | None, verb: str) -> EmotionState:
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
    name: str,
    emotions: EmotionsArg = None,
    no_render: Annotated[bool, typer.Option("--no-render", help="Only record the state; draw nothing.")] = False,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Give a character an emotion state: record it and render (or reuse) its CG, printing the path."""
    state = _state(name, emotions, "emote")
    with open_forge(ctx, workspace) as forge:
        character = forge.get(name)
        result = None if no_render else character.feel(state, record=False)
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
    name: str,
    emotions: EmotionsArg = None,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Show what conditioning a state becomes for a character (phrases, blend, attention weights)."""
    state = _state(name, emotions, "explain")
    with open_forge(ctx, workspace) as forge:
        character = forge.get(name)
        cond = character.explain(state)
    data = {"character": character.name, "requested": state.components(), **cond.to_dict()}
    if json_out:
        echo_json(data)
        return
    typer.echo(f"{character.name}: {state} -> quantised {cond.state}")
    typer.echo(f"conditioning: {cond.describe()}")
    for term in cond.terms:
        emotions_text = "+".join(term.emotions)
        typer.echo(f"  {term.blend:.2f} x [{emotions_text} {term.intensity:.2f}] {term.prompt}")
    if cond.neutral_blend > 0:
        typer.echo(f"  {cond.neutral_blend:.2f} x [neutral] {cond.base_prompt}")
    vad = state.vad()
    typer.echo(f"valence {vad.valence:+.2f}, arousal {vad.arousal:+.2f}, dominance {vad.dominance:+.2f}")


@app.command()
def mask(
    ctx: typer.Context,
    name: str,
    region: Annotated[str, typer.Argument(help="Region name, e.g. face, hair, outfit, background.")],
    source: Annotated[Path | None, typer.Option("--from", help="PNG to use as the mask (white = inside).")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write the stored mask to this PNG.")] = None,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Set a region mask from a picture (--from), or export the stored one (--out)."""
    validate_slug(name)
    validate_slug(region)
    if (source is None) == (out is None):
        raise InvalidInput("mask needs exactly one of --from FILE (set the mask) or --out FILE (export it)")
    if out is not None and (out.suffix.lower() != ".png" or not out.parent.is_dir()):
        raise InvalidInput(f"--out must be a .png in an existing folder, got {out}")
    picture = _open_image(source, "--from", "L") if source is not None else None
    from charforge.character.identity import load_identity

    with open_forge(ctx, workspace) as forge:
        character = forge.get(name)
        if picture is not None:
            character.set_mask(region, picture)
        stored = load_identity(character).mask(region)
    if out is not None:
        import numpy as np
        import PIL.Image

        PIL.Image.fromarray(stored.numpy().astype(np.uint8) * 255).save(out)
    data = {"character": name, "region": region, "pixels": int(stored.sum()), "set": source is not None,
            "out": None if out is None else str(out)}  # fmt: skip
    if json_out:
        echo_json(data)
    elif source is not None:
        typer.echo(f"{name}: {region} mask set ({data['pixels']} pixels)")
    else:
        typer.echo(f"{name}: {region} mask written to {out}")


@app.command()
def reinvert(
    ctx: typer.Context,
    name: str,
    rerender: Annotated[bool, typer.Option("--rerender", help="Draw a fresh base CG from prompt and seed.")] = False,
    steps: Annotated[int | None, typer.Option("--steps", min=1, max=200, help="Inversion steps.")] = None,
    method: Annotated[str | None, typer.Option("--method", help="ddim, null-text, negative-prompt or direct.")] = None,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Rebuild a character's identity with its current model (fixes a stale identity)."""
    validate_slug(name)
    if method is not None:
        from charforge.engine.inversion import METHODS

        if method not in METHODS:
            raise InvalidInput(f"unknown --method '{method}' (choose from {', '.join(METHODS)})")
    options = {k: v for k, v in {"steps": steps, "method": method}.items() if v is not None}
    with open_forge(ctx, workspace) as forge:
        character = forge.get(name)
        character.reinvert(rerender=rerender, **options)
        base = character.feel(record=False)
        data = {"character": name, "model_hash": character.model_hash, "base_cg": str(base.path),
                "identity": [a.to_dict() for a in character.identity()]}  # fmt: skip
    if json_out:
        echo_json(data)
    else:
        typer.echo(f"{name}: identity rebuilt with model {(data['model_hash'] or '')[:10]}; base CG {data['base_cg']}")


@app.command()
def inpaint(
    ctx: typer.Context,
    name: str,
    prompt: Annotated[str | None, typer.Option("--prompt", "-p", help="What the region becomes, e.g. 'red outfit'.")] = None,
    region: Annotated[str | None, typer.Option("--region", help="A stored mask: face, hair, outfit, background...")] = None,
    mask_file: Annotated[Path | None, typer.Option("--mask", help="A mask picture instead of --region.")] = None,
    adopt: Annotated[bool, typer.Option("--adopt", help="Make the result the character's new base.")] = False,
    seed: Annotated[int | None, typer.Option("--seed", min=0, help="Seed (default: the character's).")] = None,
    strength: Annotated[float, typer.Option("--strength", help="How much of the region is redrawn, (0, 1].")] = 1.0,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Redraw one region of a character's base CG; --adopt makes it the new base (re-inverted)."""
    validate_slug(name)
    if prompt is None or not prompt.strip():
        raise InvalidInput("inpaint needs --prompt TEXT, e.g. --prompt 'red outfit'")
    if (region is None) == (mask_file is None):
        raise InvalidInput("inpaint needs exactly one of --region NAME or --mask FILE")
    if region is not None:
        validate_slug(region)
    if not 0.0 < strength <= 1.0:
        raise InvalidInput(f"--strength must be in (0, 1], got {strength}")
    target = region if region is not None else _open_image(mask_file, "--mask", "L")
    with open_forge(ctx, workspace) as forge:
        character = forge.get(name)
        result = character.inpaint(target, prompt, adopt=adopt, seed=seed, strength=strength)
        data = {"character": name, **result.to_dict(), "base_prompt": character.prompt}
    if json_out:
        echo_json(data)
        return
    typer.echo(str(result.path))
    if adopt:
        typer.echo(f"{name} adopted it as the new base; prompt now: {data['base_prompt']}")

