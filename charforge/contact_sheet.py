"""Labelled image grids: how a person judges a cast or an emotion sweep at a glance."""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

Cell = tuple[str, Image.Image]


def contact_sheet(rows: Sequence[tuple[str, Sequence[Cell]]], *, cell: int = 128, pad: int = 6) -> Image.Image:
    """A grid with one row per (row label, cells) and a caption under every cell.

    Images are upscaled with nearest-neighbour so the 64x64 mini-model pixels stay honest (no blur
    that would hide or invent detail).
    """
    if not rows:
        raise ValueError("a contact sheet needs at least one row")
    font = ImageFont.load_default()
    label_w = 96
    caption_h = 16
    ncols = max(len(cells) for _, cells in rows)
    width = label_w + ncols * (cell + pad) + pad
    height = len(rows) * (cell + caption_h + pad) + pad
    sheet = Image.new("RGB", (width, height), (250, 250, 250))
    draw = ImageDraw.Draw(sheet)
    for r, (label, cells) in enumerate(rows):
        top = pad + r * (cell + caption_h + pad)
        draw.text((pad, top + cell // 2 - 6), label, fill=(20, 20, 20), font=font)
        for c, (caption, image) in enumerate(cells):
            left = label_w + pad + c * (cell + pad)
            sheet.paste(image.convert("RGB").resize((cell, cell), Image.NEAREST), (left, top))
            draw.text((left + 2, top + cell + 2), caption[:22], fill=(60, 60, 60), font=font)
    return sheet
