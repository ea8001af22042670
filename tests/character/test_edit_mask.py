"""The edit mask's feathered edge: weights by ring, and what stays hard (the pixel mask, the outside)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from charforge.character.edits import latent_mask, pixel_mask


def _ring_distance(cells: np.ndarray) -> np.ndarray:
    """Chebyshev distance of every cell to the nearest masked cell (0 inside), by brute force."""
    inside = np.argwhere(cells)
    ys, xs = np.indices(cells.shape)
    return np.maximum(np.abs(ys[..., None] - inside[:, 0]), np.abs(xs[..., None] - inside[:, 1])).min(-1)


@pytest.mark.parametrize("edge", [1.0, 0.5, 0.25])
@pytest.mark.parametrize("dilation", [0, 1, 2])
def test_each_ring_of_the_dilation_weighs_edge_to_its_distance(edge, dilation):
    rng = np.random.default_rng(int(edge * 8) + dilation)
    pixels = np.zeros((64, 64), dtype=bool)
    pixels[20:37, 18:41] = True  # an off-grid block: cells hold any masked pixel
    pixels[rng.integers(0, 64), rng.integers(0, 64)] = True  # and a stray pixel of its own
    cells = latent_mask(torch.from_numpy(pixels), 4, dilation, edge).numpy()
    held = pixels.reshape(16, 4, 16, 4).any((1, 3))
    distance = _ring_distance(held)
    expected = np.where(distance <= dilation, float(edge) ** distance, 0.0)
    np.testing.assert_allclose(cells, expected, rtol=1e-6)


def test_a_feathered_mask_covers_the_same_pixels_as_a_hard_one():
    """Compositing and the outside-the-face figures use where an edit may act, not by how much."""
    pixels = torch.zeros(64, 64, dtype=torch.bool)
    pixels[24:40, 20:44] = True
    hard, soft = latent_mask(pixels, 4, 2), latent_mask(pixels, 4, 2, 0.3)
    assert torch.equal(pixel_mask(hard, (64, 64)), pixel_mask(soft, (64, 64)))
    assert soft.max() == 1.0 and 0.0 < soft[soft > 0].min() < 1.0


def test_the_edge_is_a_share_in_the_table():
    from charforge.emotion.conditioning import expression_table
    from charforge.errors import InvalidInput

    assert expression_table({"edit": {"mask_edge": 0.4}}).edit.mask_edge == 0.4
    for bad in (0.0, 1.5, -0.2):
        with pytest.raises(InvalidInput, match="mask_edge"):
            expression_table({"edit": {"mask_edge": bad}})
