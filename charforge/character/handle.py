"""`Character`: a handle on one character of a workspace — a snapshot of its row plus its verbs.

The handle holds what a person asks about a character (name, prompts, seed, model, settings,
version, current state) and forwards its verbs (feel, bgm, inpaint, ...) to the modules that
implement them. Everything stored about it (identity artifacts, emotion history, assets) is reached
through `character.store`, the character's `CharacterStore` in the repository; definition changes
are compare-and-swap against the version of this snapshot (see `charforge.store.character_store`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from charforge.cards import CharacterCard
from charforge.emotion import EmotionState
from charforge.store.character_store import CharacterStore
from charforge.store.models import EmotionSource
from charforge.store.records import EmotionEntry

if TYPE_CHECKING:
    from charforge.character.bgm import BGMResult
    from charforge.character.feel import FeelResult, InpaintResult
    from charforge.character.look import LearnResult
    from charforge.emotion.conditioning import Conditioning

_UNSET: Any = object()


class Character:
    """A character of a workspace. Get one from `Forge.create`, `Forge.get` or `Forge.list`."""

    def __init__(self, store: CharacterStore) -> None:
        self.store = store
        """The character's aggregate in the store: identity artifacts, emotion history, assets."""

    def __repr__(self) -> str:
        return f"Character({self.name!r}, version={self.version})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Character)
            and other.store.repository is self.store.repository
            and other.store.row.id == self.store.row.id
        )

    def __hash__(self) -> int:
        return hash((id(self.store.repository), self.store.row.id))

    # snapshot -----------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.store.row.name

    @property
    def display_name(self) -> str:
        return self.store.row.display_name

    @property
    def prompt(self) -> str:
        return self.store.row.prompt

    @property
    def negative_prompt(self) -> str:
        return self.store.row.negative_prompt

    @property
    def seed(self) -> int:
        return self.store.row.seed

    @property
    def model_ref(self) -> str | None:
        """The model this character is drawn with; None means charforge's default model."""
        return self.store.row.model_ref

    @property
    def model_hash(self) -> str | None:
        """Content hash of the model the identity was made with (None until an identity exists)."""
        return self.store.row.model_hash

    @property
    def settings(self) -> dict[str, Any]:
        return dict(self.store.row.settings)

    @property
    def version(self) -> int:
        return self.store.row.version

    def current_state(self) -> EmotionState:
        """The last recorded state (as of this snapshot), neutral if none was recorded."""
        state = self.store.row.current_state
        return EmotionState.neutral() if state is None else EmotionState(**state)

    def refresh(self) -> Character:
        """Re-read the row (after another process changed it); returns self."""
        self.store.refresh()
        return self

    def to_dict(self) -> dict[str, Any]:
        row = self.store.row
        return {
            "name": row.name,
            "display_name": row.display_name,
            "prompt": row.prompt,
            "negative_prompt": row.negative_prompt,
            "seed": row.seed,
            "model": row.model_ref,
            "model_hash": row.model_hash,
            "settings": self.settings,
            "current_state": None if row.current_state is None else self.current_state().components(),
            "version": row.version,
            "created_at": row.created_at.isoformat(),
            "updated_at": row.updated_at.isoformat(),
        }

    # definition ---------------------------------------------------------------------------------

    def update(
        self,
        *,
        display_name: str = _UNSET,
        prompt: str = _UNSET,
        negative_prompt: str = _UNSET,
        seed: int = _UNSET,
        model: str | None = _UNSET,
        model_hash: str | None = _UNSET,
        settings: Mapping[str, Any] = _UNSET,
    ) -> Character:
        """Change fields of the definition; ConflictError if the character changed since this snapshot."""
        row = self.store.row
        fields: dict[str, Any] = {
            "name": row.name,
            "display_name": row.display_name,
            "prompt": row.prompt,
            "negative_prompt": row.negative_prompt,
            "seed": row.seed,
            "model": row.model_ref,
            "settings": row.settings,
        }
        changes = {
            "display_name": display_name,
            "prompt": prompt,
            "negative_prompt": negative_prompt,
            "seed": seed,
            "model": model,
            "settings": settings if settings is _UNSET else dict(settings),
        }
        fields.update({key: value for key, value in changes.items() if value is not _UNSET})
        card = CharacterCard.build(**fields)
        extra = {} if model_hash is _UNSET else {"model_hash": model_hash}
        self.store.define(
            display_name=card.resolved_display_name(), base_prompt=card.prompt, negative_prompt=card.negative_prompt,
            seed=card.resolved_seed(), model_ref=card.model, settings=card.settings, **extra,
        )  # fmt: skip
        return self

    def rename(self, new_name: str) -> Character:
        """Give the character a new name; its history, identity and assets follow."""
        self.store.rename(new_name)
        return self

    # verbs --------------------------------------------------------------------------------------
    # Thin forwards to the verb modules (charforge.character.feel / .bgm / .identity), imported on
    # use: the store must not pay for torch and diffusers. Those modules never import this one at
    # run time (only for type checking), so there is no import circle.

    def feel(
        self,
        state: EmotionState | Mapping[str, float] | None = None,
        /,
        *,
        record: bool = True,
        progress: bool = False,
        **intensities: float,
    ) -> FeelResult:
        """This character's CG for a state, e.g. `mira.feel(joy=0.8)`: rendered once, then served from the cache.

        A state drawn before is found by its key alone (`charforge.character.emote`), without
        importing torch or loading the model. With `record` the state also becomes the current one;
        `progress` shows the rendering's steps. See `charforge.character.feel.feel`.
        """
        from charforge.character.emote import emote

        return emote(self, EmotionState.coerce(state, intensities), record=record, progress=progress)

    def bgm(
        self, state: EmotionState | Mapping[str, float] | None = None, /, *, seconds: float = 10.0, **options: Any
    ) -> BGMResult:
        """This character's music for a state (default: its current one), e.g. `mira.bgm(seconds=20)`.

        Rendered once per mood plan, then served from the cache. See `charforge.character.bgm.bgm`.
        """
        from charforge.character.bgm import bgm

        return bgm(self, state, seconds=seconds, **options)

    def bgm_transition(self, to_state: EmotionState | Mapping[str, float], /, **options: Any) -> BGMResult:
        """One continuous piece moving from the current mood (or `from_state=`) to `to_state`."""
        from charforge.character.bgm import bgm_transition

        return bgm_transition(self, to_state, **options)

    def explain(self, state: EmotionState | Mapping[str, float]) -> Conditioning:
        """What `state` becomes for this character: phrases, blend and attention weights (no rendering)."""
        from charforge.character.cache import explain

        return explain(self, state)

    def inpaint(self, region: Any, prompt: str, *, adopt: bool = False, **options: Any) -> InpaintResult:
        """Redraw one region ("outfit" or a mask picture) of the base CG; `adopt` makes it the new base."""
        from charforge.character.feel import inpaint

        return inpaint(self, region, prompt, adopt=adopt, **options)

    def reinvert(self, *, rerender: bool = False, **options: Any) -> Character:
        """Rebuild the identity with the current model (after a model change: see StaleIdentity)."""
        from charforge.character.identity import reinvert

        reinvert(self, rerender=rerender, **options)
        return self

    def record_emotion(
        self, state: EmotionState | Mapping[str, float], *, source: EmotionSource | str = EmotionSource.API
    ) -> EmotionEntry:
        """Append a state to the history and make it the current one (see `CharacterStore.record_emotion`)."""
        return self.store.record_emotion(state, source=source)

    def learn_token(self, images: Any = None, /, **options: Any) -> LearnResult:
        """Teach this character's look as a textual-inversion token (default: from its base CG)."""
        from charforge.character.look import learn_token

        return learn_token(self, images, **options)

    def learn_lora(self, images: Any = None, /, **options: Any) -> LearnResult:
        """Teach this character's look as a peft LoRA (default: from its base CG)."""
        from charforge.character.look import learn_lora

        return learn_lora(self, images, **options)

    def set_mask(self, name: str, mask: Any) -> None:
        """Store a user-drawn region mask (white = inside), replacing the one derived from the words."""
        from charforge.character.identity import set_mask

        set_mask(self, name, mask)


IdentityBuilder = Callable[[Character, Mapping[str, Any]], None]
"""Called by `Forge.create` after the row exists, to render the base CG and store the identity."""
