"""Render jobs: what a queued job of each kind does with the Character API, and how its asset is described.

A job's params are plain JSON written when it was queued, so a worker started after a crash or a
restart can run it again; every verb it calls is cached, so running a job twice costs one render.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from charforge.emotion import EmotionState
from charforge.errors import InvalidInput
from charforge.tools.models import AssetOut, JobOut, StateOut

if TYPE_CHECKING:
    from charforge.character import Character
    from charforge.forge import Forge, Job
    from charforge.store.records import Asset

CONTENT_TYPES = {".png": "image/png", ".wav": "audio/wav", ".jpg": "image/jpeg", ".webp": "image/webp"}
UNFINISHED = ("queued", "running")


def asset_out(asset: Asset) -> AssetOut:
    return AssetOut(
        kind=asset.kind,
        url="/" + asset.relpath.as_posix(),
        sha256=asset.sha256,
        size=asset.size,
        content_type=CONTENT_TYPES.get(asset.relpath.suffix, "application/octet-stream"),
    )


def state_out(state: EmotionState) -> StateOut:
    vad = state.vad()
    return StateOut(
        emotions=state.components(), dominant=state.dominant, valence=vad[0], arousal=vad[1], dominance=vad[2]
    )


def job_out(job: Job) -> JobOut:
    return JobOut(
        id=job.id, kind=job.kind, status=job.status, character=job.character, progress=job.progress,
        error=job.error, result=job.result,
    )  # fmt: skip


def _feel(character: Character, params: Mapping[str, Any]) -> Asset:
    return character.feel(EmotionState(**params["state"]), record=False).asset


def _bgm(character: Character, params: Mapping[str, Any]) -> Asset:
    result = character.bgm(
        EmotionState(**params["state"]), seconds=params["seconds"], loop=params["loop"], steps=params["steps"]
    )
    assert result.asset is not None  # a character's music is always stored
    return result.asset


def _inpaint(character: Character, params: Mapping[str, Any]) -> Asset:
    options = {"steps": params["steps"]} if params.get("steps") else {}
    return character.inpaint(params["region"], params["prompt"], **options).asset


RUNNERS: dict[str, Callable[[Character, Mapping[str, Any]], Asset]] = {
    "feel": _feel,
    "bgm": _bgm,
    "inpaint": _inpaint,
}
BATCHED = frozenset({"feel"})
"""Kinds whose queued jobs of one character are rendered together: `feel_many` denoises a batch of
emotion edits in one loop call, which on a CPU costs about half as much per picture as one call each
(6 states on charforge-mini, 1 thread: 0.21 s against 0.38-0.41 s of CPU per picture)."""


def run_batch(forge: Forge, jobs: Sequence[Job]) -> list[dict[str, Any]]:
    """Claimed jobs of one `BATCHED` kind and one character, rendered in one go; one result per job, in order."""
    from charforge.character.feel import feel_many  # torch: only once a picture has to be drawn

    kinds = {job.kind for job in jobs}
    if kinds != {"feel"} or len({job.character for job in jobs}) != 1 or jobs[0].character is None:
        raise InvalidInput(f"jobs {[job.id for job in jobs]} are not feel jobs of one character")
    states = [EmotionState(**job.params["state"]) for job in jobs]
    results = feel_many(forge.get(jobs[0].character), states, batch=len(states))
    return [{"asset": asset_out(result.asset).model_dump()} for result in results]


def run_job(forge: Forge, job: Job) -> dict[str, Any]:
    """Do the job's work (this is where the model runs) and return its result: the asset it produced."""
    runner = RUNNERS.get(job.kind)
    if runner is None:
        raise InvalidInput(f"job {job.id} is a {job.kind!r} job, which this worker does not run")
    if job.character is None:
        raise InvalidInput(f"job {job.id}: its character was deleted")
    asset = runner(forge.get(job.character), job.params)
    return {"asset": asset_out(asset).model_dump()}
