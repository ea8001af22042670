"""A chatbot backend keeping a character's CG and BGM in step with a conversation (Python API, offline).

    python examples/chatbot_loop.py [WORKSPACE]

Each user turn is read for feeling words (a stand-in for your own classifier or an LLM's judgement,
which would hand back the same {label: intensity} mapping, GoEmotions labels included), the state is
recorded, and the character's picture and music for it are fetched: rendered once, cached after.
"""

from __future__ import annotations

import re
import sys

from charforge import EmotionState, Forge
from charforge.cards import load_cards
from charforge.demo import cast_dir

TURNS = [
    "Hi Mira! I brought you a present.",
    "Sorry, I broke your favourite cup on the way...",
    "Wait, someone is following us. I'm scared.",
    "It was just the cat! Thank you for staying with me.",
]
# word -> label the emotion table knows (basis, alias or GoEmotions label)
CUES = {"present": "joy", "hi": "joy", "sorry": "sadness", "broke": "sadness", "scared": "fear",
        "following": "fear", "thank": "gratitude", "just": "relief", "cat": "amusement"}  # fmt: skip


def feelings(text: str) -> dict[str, float]:
    """Turn a message into intensities: each cue word adds 0.35, capped at 1."""
    found: dict[str, float] = {}
    for word in re.findall(r"[a-z]+", text.lower()):
        if word in CUES:
            found[CUES[word]] = min(1.0, found.get(CUES[word], 0.0) + 0.35)
    return found


def main(workspace: str) -> None:
    with Forge.open(workspace) as forge:
        if not forge.exists("mira"):
            card = next(card for _, card in load_cards(cast_dir()) if card.name == "mira")
            forge.create_from_card(card)
        mira = forge.get("mira")
        for turn in TURNS:
            state = EmotionState.from_mapping(feelings(turn))
            picture = mira.feel(state)          # records the state and returns its CG
            music = mira.bgm(seconds=8)         # music for the state just recorded
            print(f"user: {turn}\n  mira feels {state} -> {picture.path.name}{' (cached)' if picture.cached else ''}, "
                  f"music {music.plan.mode} ~{music.plan.bpm:.0f} bpm")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "examples-workspace")
