"""The decoder phase's locality term: a change confined to some latent cells stays out of the pixels around them."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers.training import ToySource, tiny_config, tiny_spec

from charforge.errors import InvalidInput
from charforge.recipes.training import LatentDiffusionTrainer


def _leak(trainer: LatentDiffusionTrainer) -> float:
    """Mean squared change of the decoded pictures outside the run's locality cells when the latents in
    them are swapped between samples."""
    mean = trainer._latents[0].float()
    cells = torch.tensor(trainer.cfg.locality_cells).bool()
    outside = ~F.interpolate(cells.float()[None, None], scale_factor=4, mode="nearest")[0, 0].bool()
    order = torch.roll(torch.arange(len(mean)), 1)
    with torch.no_grad():
        plain = trainer.vae.decode(mean).sample
        swapped = trainer.vae.decode(torch.where(cells, mean[order], mean)).sample
    return float(((swapped - plain) ** 2)[..., outside].mean())


@pytest.mark.slow
def test_a_locality_fine_tune_keeps_a_face_change_out_of_the_pixels_around_it(tmp_path):
    """Two decoder-only fine-tunes of one model, alike but for the locality weight."""
    from charforge.recipes.portrait_mini.recipe import init_from_model

    spec = tiny_spec(tmp_path)
    spec.vae_config.update(down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
                           block_out_channels=(8, 8, 8))  # fmt: skip
    LatentDiffusionTrainer(spec, ToySource(), tiny_config(), tmp_path / "old").export(tmp_path / "old" / "model")
    leaks, cells = {}, None
    for locality in (20.0, 0.0):
        trainer = init_from_model(tmp_path / "old" / "model", tmp_path / f"dec{locality:g}", minutes=1.0,
                                  dataset_size=8, threads=1, decoder_only=True, lr=3e-3, locality=locality)  # fmt: skip
        if locality:
            cells = torch.tensor(trainer.cfg.locality_cells)
            assert cells.shape == (16, 16) and 0 < cells.sum() < cells.numel() / 2  # the face, grown by a cell
        else:
            assert trainer.cfg.locality_cells is None
            trainer.cfg.locality_cells = cells.tolist()  # measured on the same cells; unused in its training
        trainer.cfg.max_steps = 40
        trainer.run()
        leaks[locality] = _leak(trainer)
    assert leaks[20.0] < 0.5 * leaks[0.0]


def test_locality_is_a_decoder_fine_tune_option(tmp_path):
    from charforge.recipes.portrait_mini.recipe import init_from_model

    with pytest.raises(InvalidInput, match="--decoder-only"):
        init_from_model(tmp_path / "none", tmp_path / "run", minutes=1.0, locality=1.0)


@pytest.mark.parametrize(
    ("cells", "message"),
    [(None, "needs locality_cells"), ([[1.0] * 8] * 8, "some cells set and some not"), ([[1.0] * 4] * 4, "8, 8")],
)
def test_a_locality_term_without_usable_cells_is_refused(tmp_path, cells, message):
    config = tiny_config(decoder_locality=1.0, locality_cells=cells)
    with pytest.raises(InvalidInput, match=message):
        LatentDiffusionTrainer(tiny_spec(tmp_path), ToySource(), config, tmp_path / "r").run()
