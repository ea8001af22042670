"""Planning a regeneration: one job row per asset (picture or music of a label at an intensity).

The plan computes each asset's cache key the way `feel`/`bgm` would, so an asset already stored for the
same identity, state, model and parameters is recorded as done without being queued: running the same
regeneration twice renders nothing the second time. Open rows of an interrupted run are reused, not
duplicated (the jobs table is unique per kind, character and key).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from charforge.character import Character
from charforge.emotion.labels import check_labels, label_state
from charforge.errors import InvalidInput
from charforge.store.jobs import JobRepository
from charforge.store.models import AssetKind

log = logging.getLogger(__name__)

CG_JOB = "render-cg"
BGM_JOB = "render-bgm"
DEFAULT_BGM = {"seconds": 16.0, "loop": True}


@dataclass(frozen=True)
class Request:
    """What to regenerate: characters (None: all), labels, intensities, and whether music too."""

    names: tuple[str, ...] | None
    labels: tuple[str, ...]
    intensities: tuple[float, ...] = (1.0,)
    bgm: bool = False
    bgm_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", check_labels(self.labels))
        if not self.intensities or any(not 0.0 < i <= 1.0 for i in self.intensities):
            raise InvalidInput(f"intensities must be in (0, 1], got {list(self.intensities)}")
        object.__setattr__(self, "intensities", tuple(dict.fromkeys(float(i) for i in self.intensities)))


@dataclass(frozen=True)
class PlannedAsset:
    character: str
    kind: str  # "cg" or "bgm"
    label: str
    intensity: float
    key: str | None  # None when the character has no identity yet (dry run)
    cached: bool
    job: int | None = None  # the job row (None in a dry run)


@dataclass(frozen=True)
class Plan:
    items: tuple[PlannedAsset, ...]

    @property
    def todo(self) -> list[int]:
        """Jobs that still have to run, in plan order."""
        return [i.job for i in self.items if not i.cached and i.job is not None]

    @property
    def jobs(self) -> list[int]:
        return [i.job for i in self.items if i.job is not None]

    def to_dict(self) -> dict[str, Any]:
        return {
            "assets": len(self.items),
            "cached": sum(i.cached for i in self.items),
            "to_render": sum(not i.cached for i in self.items),
            "items": [vars(i) for i in self.items],
        }


def parse_intensities(text: str) -> tuple[float, ...]:
    """ "0.5,1.0" -> (0.5, 1.0)."""
    try:
        values = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise InvalidInput(f"intensities must be numbers separated by commas, e.g. 0.5,1.0; got {text!r}") from None
    if not values:
        raise InvalidInput("no intensities given")
    return values


def plan(forge: Any, request: Request, *, dry_run: bool = False) -> Plan:
    """Compute every requested asset's key and (unless `dry_run`) record one job row per asset.

    Characters without an identity get one first (it is what the keys are made of); in a dry run
    their assets are listed as to render, with no key.
    """
    characters = forge.list() if request.names is None else [forge.get(name) for name in request.names]
    if not characters:
        raise InvalidInput("the workspace has no characters to regenerate")
    queue = None if dry_run else forge.repository.jobs
    items: list[PlannedAsset] = []
    for character in characters:
        items.extend(_plan_character(character, request, queue))
    return Plan(tuple(items))


def _plan_character(character: Character, request: Request, queue: JobRepository | None) -> list[PlannedAsset]:
    from charforge.character.bgm import bgm_key
    from charforge.character.feel import feel_key
    from charforge.character.identity import build_identity, check_fresh, current_model_hash, has_identity

    if not has_identity(character):
        if queue is None:
            return [PlannedAsset(character.name, kind, label, i, None, False)
                    for kind in _kinds(request) for label in request.labels for i in request.intensities]  # fmt: skip
        log.info("%s has no identity yet; building it first", character.name)
        build_identity(character)
        character.refresh()
    check_fresh(character, current_model_hash(character))  # a stale identity: reinvert first (names the command)
    out: list[PlannedAsset] = []
    seen: set[tuple[str, str]] = set()
    for kind in _kinds(request):
        for intensity in request.intensities:
            for label in request.labels:
                state = label_state(label, intensity)
                if kind == AssetKind.CG.value:
                    key = feel_key(character, state)
                    params: dict[str, Any] = {}
                else:
                    params = {**DEFAULT_BGM, **request.bgm_options}
                    key = bgm_key(character, state, **params)[0]
                if (kind, key) in seen:  # labels quantising to the same state share one asset
                    continue
                seen.add((kind, key))
                asset = character.store.find_asset(kind, key)
                job = None
                if queue is not None:
                    job_params = {"label": label, "intensity": intensity, "state": state.intensities(), **params}
                    done = None if asset is None else {"path": asset.relpath.as_posix(), "sha256": asset.sha256,
                                                       "state_hash": asset.state_hash, "rendered": False}  # fmt: skip
                    job = queue.plan_job(_job_kind(kind), character.name, key, job_params, done=done)
                out.append(PlannedAsset(character.name, kind, label, intensity, key, asset is not None, job))
    return out


def _kinds(request: Request) -> list[str]:
    return [AssetKind.CG.value, *([AssetKind.BGM.value] if request.bgm else [])]


def _job_kind(kind: str) -> str:
    return CG_JOB if kind == AssetKind.CG.value else BGM_JOB

