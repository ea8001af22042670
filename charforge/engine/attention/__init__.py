"""Attention control for the sampling loop: store, Prompt-to-Prompt, MasaCtrl, composed in one hook.

Typical use: `denoise(..., hooks=[AttentionControl([Replace(tok, src, [dst]), LocalBlend(...)])])`.
Pass every controller to one `AttentionControl`: it owns the UNet's processors for the call.
"""

from charforge.engine.attention.control import AttentionControl, Controller, Layer, RowMap, unet_layers
from charforge.engine.attention.masactrl import MutualSelfAttention
from charforge.engine.attention.p2p import LocalBlend, Refine, Replace, Reweight, step_window, word_schedule
from charforge.engine.attention.store import AttentionStore, render_map
from charforge.engine.attention.tokens import emphasis_weights, parse_emphasis, word_columns

__all__ = [
    "AttentionControl",
    "AttentionStore",
    "Controller",
    "Layer",
    "LocalBlend",
    "MutualSelfAttention",
    "Refine",
    "Replace",
    "Reweight",
    "RowMap",
    "emphasis_weights",
    "parse_emphasis",
    "render_map",
    "step_window",
    "unet_layers",
    "word_columns",
    "word_schedule",
]
