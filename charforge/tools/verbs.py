"""What each tool does, over the public Character API. Arguments arrive validated; limits are the toolbox's.

Anything that needs the model becomes a job: the answer is immediate either way (the asset when it is
cached, else a job id to poll), so no tool call waits on a render.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Protocol

from charforge.emotion import EmotionState
from charforge.errors import InvalidInput
from charforge.store.models import IdentityKind
from charforge.tools.models import (
    BgmArgs,
    CastOut,
    CharacterOut,
    EditArgs,
    GetCharacterArgs,
    JobOut,
    JobStatusArgs,
    ListCharactersArgs,
    RenderArgs,
    RenderOut,
    SetEmotionArgs,
)
from charforge.tools.render import asset_out, job_out, state_out

if TYPE_CHECKING:
    from charforge.character import Character
    from charforge.character.index import PictureIndex
    from charforge.forge import Forge
    from charforge.store import EmotionSource
    from charforge.store.records import Job


class Toolbox(Protocol):
    """What the verbs use of `charforge.tools.dispatch.Toolbox` (a Protocol: the dispatcher imports the
    registry, which imports these verbs, so they cannot import it back)."""

    forge: Forge
    source: EmotionSource
    pictures: PictureIndex

    def check_seconds(self, seconds: float) -> float: ...

    def check_steps(self, steps: int | None) -> int | None: ...

    def queue(self, kind: str, character: str, params: dict[str, Any]) -> Job: ...

log = logging.getLogger(__name__)


def _character_out(character: Character, history: int) -> CharacterOut:
    entries = character.store.history(limit=history) if history else []
    return CharacterOut(
        name=character.name,
        display_name=character.display_name,
        prompt=character.prompt,
        has_identity=any(a.kind == IdentityKind.INVERTED_LATENTS for a in character.store.identity()),
        state=state_out(character.current_state()),
        history=[{"emotions": e.state.components(), "source": e.source, "at": e.created_at.isoformat()}
                 for e in entries],  # fmt: skip
        cg_count=len(character.store.assets("cg")),
        bgm_count=len(character.store.assets("bgm")),
    )


def list_characters(box: Toolbox, args: ListCharactersArgs) -> CastOut:
    return CastOut(characters=[_character_out(c, 0) for c in box.forge.list()])


def get_character(box: Toolbox, args: GetCharacterArgs) -> CharacterOut:
    return _character_out(box.forge.get(args.name), args.history)


def _picture(box: Toolbox, character: Character, state: EmotionState) -> RenderOut:
    found = box.pictures.picture(character, state)
    if found is not None:
        return RenderOut(
            character=character.name, state=state_out(found.state), cached=True, asset=asset_out(found.asset)
        )
    job = box.queue("feel", character.name, {"state": state.intensities()})
    return RenderOut(
        character=character.name, state=state_out(state), cached=False, job=job_out(job),
        note=f"rendering; poll job_status with id {job.id}",
    )  # fmt: skip


def set_emotion(box: Toolbox, args: SetEmotionArgs) -> RenderOut:
    state = EmotionState.from_mapping(args.emotions)
    character = box.pictures.record(args.name, state, source=box.source)
    if args.reason:
        log.info("%s feels %s because: %s", character.name, state, args.reason)
    return _picture(box, character, state)


def render(box: Toolbox, args: RenderArgs) -> RenderOut:
    character = box.forge.get(args.name)
    state = character.current_state() if args.state is None else EmotionState.from_mapping(args.state)
    return _picture(box, character, state)


def edit(box: Toolbox, args: EditArgs) -> RenderOut:
    character = box.forge.get(args.name)
    if args.from_text.strip().lower() not in character.prompt.lower():
        raise InvalidInput(
            f"from_text {args.from_text!r} is not part of {character.name}'s prompt {character.prompt!r}; "
            "quote words from it, e.g. the outfit or hair description"
        )
    from charforge.character.identity import region_words

    regions = list(region_words(character))
    region = args.region or args.to_text.split()[-1].lower()
    if region not in regions:
        raise InvalidInput(
            f"cannot tell which region to redraw from {region!r}; pass region: one of {', '.join(regions)}"
        )
    steps = box.check_steps(args.steps)
    job = box.queue("inpaint", character.name, {"region": region, "prompt": args.to_text, "steps": steps})
    return RenderOut(
        character=character.name, state=state_out(character.current_state()), cached=False, job=job_out(job),
        note=f"redrawing the {region}; poll job_status with id {job.id}",
    )  # fmt: skip


def bgm(box: Toolbox, args: BgmArgs) -> RenderOut:
    from charforge.character.bgm import DEFAULT_STEPS, find_bgm

    character = box.forge.get(args.name)
    state = character.current_state() if args.state is None else EmotionState.from_mapping(args.state)
    seconds = box.check_seconds(args.seconds)
    steps = box.check_steps(args.steps) or DEFAULT_STEPS
    found = find_bgm(character, state, seconds=seconds, loop=args.loop, steps=steps)
    if found is not None and found.asset is not None:
        return RenderOut(character=character.name, state=state_out(state), cached=True, asset=asset_out(found.asset))
    params: dict[str, Any] = {"state": state.intensities(), "seconds": seconds, "loop": args.loop, "steps": steps}
    job = box.queue("bgm", character.name, params)
    return RenderOut(
        character=character.name, state=state_out(state), cached=False, job=job_out(job),
        note=f"composing; poll job_status with id {job.id}",
    )  # fmt: skip


def job_status(box: Toolbox, args: JobStatusArgs) -> JobOut:
    return job_out(box.forge.get_job(args.id))
