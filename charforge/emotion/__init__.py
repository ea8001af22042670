"""Emotion states over Plutchik's basis, their aliases and valence/arousal/dominance."""

from charforge.emotion.state import NEUTRAL, EmotionState
from charforge.emotion.table import BASIS, VAD, emotion_table

__all__ = ["BASIS", "NEUTRAL", "VAD", "EmotionState", "emotion_table"]
