"""`--minutes` is the whole command's wall-clock budget, and Ctrl-C keeps the work done (issue #19 item 4)."""

from __future__ import annotations

import json
import time

import pytest
from helpers.training import ToySource, tiny_config, tiny_spec

from charforge.recipes.training import LatentDiffusionTrainer
from charforge.recipes.training.budget import Budget
from charforge.recipes.training.runs import load_run


class Interrupted(ToySource):
    """Ctrl-C arrives while the `after`-th picture is read."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.after = after

    def __getitem__(self, i: int):
        if self.calls + 1 >= self.after:
            raise KeyboardInterrupt
        return super().__getitem__(i)


@pytest.mark.slow  # trains (tiny components, 12 s)
def test_a_run_with_its_export_ends_within_ten_percent_of_its_budget(tmp_path):
    budget = Budget.minutes(0.2)  # 12 s, started before the data is "rendered"
    time.sleep(1.0)  # what a recipe does before the trainer (rendering data) is spent from the budget too
    cfg = tiny_config(minutes=0.2, max_steps=None, decoder_minutes=0.04, checkpoint_minutes=0.05)
    trainer = LatentDiffusionTrainer(tiny_spec(tmp_path), ToySource(), cfg, tmp_path / "run")
    trainer.run(budget)
    trainer.export(tmp_path / "run" / "model")
    took = budget.spent()
    assert 0.9 * budget.seconds <= took <= 1.1 * budget.seconds, took
    assert trainer.phase == "done"
    assert all(trainer.finished[phase]["step"] > 0 for phase in ("vae", "unet", "decoder"))  # each had its share


@pytest.mark.slow  # trains (tiny components, a few steps)
def test_ctrl_c_saves_the_steps_done_and_resume_continues_from_them(tmp_path):
    run = tmp_path / "run"
    cfg = tiny_config(max_steps=6)  # checkpoints every 100 min: only the interrupt saves mid-phase
    trainer = LatentDiffusionTrainer(tiny_spec(tmp_path), Interrupted(after=16 + 4 * 3 + 2), cfg, run)
    with pytest.raises(KeyboardInterrupt):
        trainer.run()  # 16 reads time the encoding, then 4 a step: interrupted inside step 4
    saved = json.loads((run / "checkpoint" / "state.json").read_text())
    assert saved["phase"] == "vae" and saved["step"] == 3
    resumed = load_run(run, ToySource())
    assert resumed.step == 3
    resumed.run()
    assert resumed.phase == "done" and resumed.finished["vae"]["step"] == 6
