"""A character's picture and music following its feelings (runs offline with the shipped mini models).

    python examples/feel_and_music.py [WORKSPACE]

Creates Mira from the sample cast, gives her three feelings, and prints where each CG and BGM is.
Every result is cached in the workspace: run it twice and the second run renders nothing. The long
calls are asked for `progress=True`, so the first run shows what it is doing (a few minutes on a CPU).
"""

from __future__ import annotations

import sys

from charforge import EmotionState, Forge
from charforge.cards import load_cards
from charforge.demo import cast_dir

workspace = sys.argv[1] if len(sys.argv) > 1 else "examples-workspace"
with Forge.open(workspace) as forge:
    if not forge.exists("mira"):
        card = next(card for _, card in load_cards(cast_dir()) if card.name == "mira")
        forge.create_from_card(card)  # renders and inverts her base CG once
    mira = forge.get("mira")

    for feeling in (EmotionState(joy=0.9), EmotionState(sadness=0.8), EmotionState(anger=0.7, surprise=0.3)):
        picture = mira.feel(feeling, progress=True)    # redraws only the face; recorded as her current state
        music = mira.bgm(seconds=8, progress=True)     # her current state -> mood plan -> spectrogram diffusion
        print(f"{feeling}: CG {picture.path}{' (cached)' if picture.cached else ''}")
        print(f"    BGM {music.path} [{music.plan.prompt}, {music.plan.mode}, ~{music.plan.bpm:.0f} bpm]")

    glide = mira.bgm_transition(EmotionState(joy=0.9), segments=3, progress=True)  # from her current mood to joy
    print(f"transition {glide.plan.prompt} -> {glide.plan_to.prompt}: {glide.path}")
