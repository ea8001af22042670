"""Arguments and results of the charforge tools, as pydantic models: the schema an LLM sees is the
validation the dispatcher runs, so the two cannot disagree.

Bounds that belong to the schema (name pattern, intensity range, text length) live here; bounds a
deployment may tighten (seconds, steps, rate) are checked again by the dispatcher against `Limits`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from charforge.emotion.table import BASIS
from charforge.paths import SLUG_MAX

MAX_TEXT = 300
MAX_LABELS = 16
MAX_SECONDS = 60.0
MAX_STEPS = 50

Name = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=SLUG_MAX),
    Field(description="A character's name: lowercase letters, digits, '-' and '_' (see list_characters)."),
]
Intensity = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
Label = Annotated[str, StringConstraints(min_length=1, max_length=32)]
Emotions = Annotated[
    dict[Label, Intensity],
    Field(
        max_length=MAX_LABELS,
        description=(
            "Emotion label -> intensity in [0, 1], e.g. {\"joy\": 0.8, \"fear\": 0.2}. Labels: Plutchik's eight "
            f"({', '.join(BASIS)}), aliases such as happy, angry, scared, and the 28 GoEmotions labels "
            "(admiration, amusement, gratitude, nervousness, ...). All low values mean neutral."
        ),
    ),
]
Text = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT)]


class Args(BaseModel):
    """Unknown fields are refused: a misspelt argument is an error the model can correct, not a silent default."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ListCharactersArgs(Args):
    pass


class GetCharacterArgs(Args):
    name: Name
    history: Annotated[int, Field(ge=0, le=50, description="How many recent emotion states to include.")] = 5


class SetEmotionArgs(Args):
    name: Name
    emotions: Emotions
    reason: Annotated[str, StringConstraints(max_length=MAX_TEXT)] | None = Field(
        default=None, description="Why the character feels this (kept in the log, not in the picture)."
    )


class RenderArgs(Args):
    name: Name
    state: Emotions | None = Field(default=None, description="The state to draw; default: the current one.")


class EditArgs(Args):
    name: Name
    from_text: Text = Field(description="Words of the character's prompt to change, e.g. \"blue outfit\".")
    to_text: Text = Field(description="What they become, e.g. \"red outfit\" (same last word names the region).")
    region: Name | None = Field(
        default=None, description="Region to redraw (face, hair, outfit, background); default: to_text's last word."
    )
    steps: Annotated[int, Field(ge=1, le=MAX_STEPS)] | None = None


class BgmArgs(Args):
    name: Name
    state: Emotions | None = Field(default=None, description="The mood to score; default: the current state.")
    seconds: Annotated[float, Field(gt=0.0, le=MAX_SECONDS, allow_inf_nan=False)] = 10.0
    loop: bool = Field(default=False, description="Whole bars with a seamless seam, for background looping.")
    steps: Annotated[int, Field(ge=1, le=MAX_STEPS)] | None = None


class JobStatusArgs(Args):
    id: Annotated[int, Field(ge=1, le=2**53, description="A job id returned by another tool.")]


# results ----------------------------------------------------------------------------------------------


class AssetOut(BaseModel):
    kind: str
    url: str = Field(description="Path under the service, e.g. /assets/cg/ab/<sha256>.png")
    sha256: str
    size: int
    content_type: str


class JobOut(BaseModel):
    id: int
    kind: str
    status: Literal["queued", "running", "done", "failed", "cancelled"]
    character: str | None
    progress: float
    error: str | None = None
    result: dict[str, Any] | None = None


class StateOut(BaseModel):
    emotions: dict[str, float]
    dominant: str
    valence: float
    arousal: float
    dominance: float


class CharacterOut(BaseModel):
    name: str
    display_name: str
    prompt: str
    has_identity: bool
    state: StateOut
    history: list[dict[str, Any]] = []
    cg_count: int = 0
    bgm_count: int = 0


class CastOut(BaseModel):
    characters: list[CharacterOut]


class RenderOut(BaseModel):
    """Either the asset at once (`cached`), or a job to poll with job_status."""

    character: str
    state: StateOut
    cached: bool
    asset: AssetOut | None = None
    job: JobOut | None = None
    note: str = ""
