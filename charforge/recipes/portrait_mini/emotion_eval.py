"""Emotion fidelity of a portrait model: does requested intensity grade, do mixtures show both feelings?

The grid is fixed up front (issue 18): every basis emotion at 0.1, 0.2, ..., 1.0 and every pair of
emotions with weights 0.3 / 0.5 / 0.7 (the other 1 - w), on characters whose identities were held
out of training. Pictures are made the way `Character.feel` makes them (render, invert, edit with
Prompt-to-Prompt inside the face mask; `mode="edit"`) or as plain generations of the target prompt
with the same seed (`mode="plain"`, what the model itself draws). The judge (`judge.py`, trained on
renders only) reads each picture's eight intensities.

The same machinery measures a model's calibration (`calibrate`): how strongly each emotion shows at
each edit strength, by the judge or, for models it cannot read, by how much the face changes.
"""

from __future__ import annotations

import itertools
import logging
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr

from charforge.emotion.calibration import Calibration, Curve, Point
from charforge.emotion.conditioning import (
    Conditioning,
    ExpressionTable,
    Term,
    conditioning,
    expression_table,
    swap_phrase,
    unlike_terms,
)
from charforge.emotion.table import BASIS
from charforge.recipes.portrait_mini import population, render
from charforge.recipes.portrait_mini.dataset import image_to_tensor
from charforge.recipes.portrait_mini.judge import CALIBRATION_WEIGHTS, EmotionJudge, load_judge, render_faces

log = logging.getLogger(__name__)

LEVELS: tuple[float, ...] = tuple(round(0.1 * k, 1) for k in range(1, 11))
MIX_WEIGHTS: tuple[float, ...] = (0.3, 0.5, 0.7)
CAST_SEED = 2025  # held-out identities of the evaluation (not the training seed 1234, not the judge's)
CALIBRATION_CAST_SEED = 2026  # other held-out identities, so calibration and evaluation never share a character
PAIRS: tuple[tuple[str, str], ...] = tuple(itertools.combinations(BASIS, 2))


@dataclass(frozen=True)
class Member:
    name: str
    prompt: str  # calm caption of a held-out identity
    seed: int


def held_out_cast(count: int, seed: int = CAST_SEED) -> list[Member]:
    """`count` calm characters of identities held out of training (the evaluation's cast by default)."""
    people = population.sample_portraits(seed, count, held_out=True)
    base = 300 if seed == CAST_SEED else 700
    return [Member(f"held{k}", p.with_expression("neutral", 0.0).caption(), base + k) for k, p in enumerate(people)]


def calibration_cast(count: int) -> list[Member]:
    """The characters a calibration is measured on: held out of training and of the evaluation's cast."""
    return held_out_cast(count, CALIBRATION_CAST_SEED)


# --- making pictures ------------------------------------------------------------------------------

Draw = Callable[[Sequence[Conditioning]], list[np.ndarray]]


@dataclass
class Sitting:
    """One character ready to be drawn: its calm picture, its face region and how to draw states."""

    member: Member
    base: np.ndarray
    face: np.ndarray  # bool H x W: where an edit may change the picture
    draw: Draw
    outside_psnr: list[float] = field(default_factory=list)  # edits: decoded picture vs base outside the face


@contextmanager
def sittings(
    cast: Sequence[Member], mode: str, model: str | None, steps: int = 20, table: ExpressionTable | None = None
) -> Iterator[Iterator[Sitting]]:
    """Characters of `cast` one by one, created in a scratch workspace (edit mode) or not at all (plain)."""
    table = table or expression_table()
    if mode in ("edit", "fast"):
        from charforge.character.identity import build_identity
        from charforge.forge import Forge

        with tempfile.TemporaryDirectory() as tmp, Forge.open(tmp, identity_builder=build_identity) as forge:
            yield (
                character_sitting(
                    forge.create(m.name, prompt=m.prompt, seed=m.seed, model=model, build_options={"steps": steps}),
                    table,
                    fast=mode == "fast",
                )
                for m in cast
            )
        return
    from charforge.engine import load_model, txt2img
    from charforge.engine.attention import AttentionControl
    from charforge.engine.attention.p2p import Reweight
    from charforge.engine.attention.tokens import max_columns, word_columns

    bundle = load_model(model)

    def plain(member: Member, conds: Sequence[Conditioning]) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        for start in range(0, len(conds), 16):
            chunk = list(conds[start : start + 16])
            weights = {}
            for row, cond in enumerate(chunk):
                w = torch.ones(max_columns(bundle.tokenizer, cond.target_prompt))
                for words, weight in cond.token_weights().items():
                    w[word_columns(bundle.tokenizer, cond.target_prompt, words)] = weight
                weights[row] = w
            result = txt2img(
                bundle,
                [c.target_prompt for c in chunk],
                seed=member.seed,
                steps=steps,
                guidance=5.0,
                hooks=[AttentionControl([Reweight(weights)])],
            )
            out += [np.asarray(im) for im in result.images]
        return out

    def each() -> Iterator[Sitting]:
        for member in cast:
            base = plain(member, [conditioning({}, member.prompt, table)])[0]
            face = render.render(render.portrait_from_caption(member.prompt))[1]["face"]
            yield Sitting(member, base, face, lambda conds, m=member: plain(m, conds))

    yield each()


def character_sitting(character: Any, table: ExpressionTable, fast: bool = False) -> Sitting:
    """A stored character drawn the way `feel` draws it (edits of its inverted base CG, composited;
    `fast`: the same edits drawn by the model's few-step student, `edits.fast_edit_latents`)."""
    from charforge.character import edits
    from charforge.character.identity import character_model, load_identity

    student = edits.student_of(character.model_ref) if fast else None
    bundle = character_model(character)
    identity = load_identity(character, bundle)
    cells = edits.edit_mask(bundle, identity, table)
    inside = (
        edits.pixel_mask(cells, identity.base.shape[:2]).numpy()
        if cells is not None
        else np.ones(identity.base.shape[:2], dtype=bool)
    )

    def draw(conds: Sequence[Conditioning]) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        for start in range(0, len(conds), 8):
            chunk = list(conds[start : start + 8])
            latents = edits.fast_edit_latents(student, identity, chunk, table) if student else edits.edit_latents(
                bundle, identity, chunk, table)  # fmt: skip
            pictures = edits.decode_pictures(bundle, latents[1:])
            sitting.outside_psnr.extend(psnr_outside(p, identity.base, inside) for p in pictures)
            out += edits.composite(pictures, identity.base, cells) if cells is not None else pictures
        return out

    member = Member(character.name, character.prompt, character.seed)
    sitting = Sitting(member, identity.base, inside, draw)
    return sitting


def psnr_outside(picture: np.ndarray, base: np.ndarray, face: np.ndarray) -> float:
    """PSNR (dB) of the raw decoded edit against the base CG outside the face region (before compositing)."""
    diff = (picture.astype(np.float64) - base.astype(np.float64))[~face] / 255.0
    mse = float((diff**2).mean()) if diff.size else 0.0
    return 99.0 if mse == 0 else 10 * float(np.log10(1.0 / mse))


def read(judge: EmotionJudge, pictures: Sequence[np.ndarray]) -> np.ndarray:
    """N x 8 judged intensities (columns in BASIS order)."""
    batch = torch.stack([image_to_tensor(p) for p in pictures])
    return judge.intensities(batch).numpy()


# --- the sweep ------------------------------------------------------------------------------------


def judge_noise(judge: EmotionJudge, count: int = 400) -> np.ndarray:
    """Per emotion, the judge's RMS error on renders of held-out identities: the finest step it can resolve."""
    people = list(population.sample_portraits(CAST_SEED + 1, count, held_out=True))
    truth = np.array([[p.state().get(e, 0.0) for e in BASIS] for p in people])
    pred = judge.intensities(render_faces(people)).numpy()
    return np.sqrt(((pred - truth) ** 2).mean(0))


def distinct_levels(means: Sequence[float], noise: float) -> int:
    """Levels in request order whose reading exceeds the last counted one by more than `noise` (greedy)."""
    count, last = 0, -np.inf
    for m in means:
        if m > last + noise:
            count, last = count + 1, m
    return count


def _sweep_character(
    k: int, member: Member, mode: str, model: str | None, steps: int, calibration: Calibration | None
) -> dict[str, Any]:
    """Every picture of the grid for one character, drawn in a worker process of its own: the calm
    base, then the singles (emotion by emotion, LEVELS each), then one mixture per pair."""
    torch.set_num_threads(1)
    table = expression_table()
    singles = [{e: v} for e in BASIS for v in LEVELS]
    wanted = [(a, b, MIX_WEIGHTS[(i + k) % len(MIX_WEIGHTS)]) for i, (a, b) in enumerate(PAIRS)]
    with sittings([member], mode, model, steps, table) as people:
        sit = next(people)
        pictures = sit.draw([conditioning(s, member.prompt, table, calibration) for s in singles])
        mixed = sit.draw(
            [conditioning({a: w, b: round(1 - w, 2)}, member.prompt, table, calibration) for a, b, w in wanted]
        )
        log.info("%s drawn", member.name)
        return {
            "name": member.name,
            "pictures": np.stack([sit.base, *pictures, *mixed]),
            "face": sit.face,
            "mixes": wanted,
            "outside": list(sit.outside_psnr),
        }


def _face_change(part: dict[str, Any]) -> dict[str, list[tuple[float, float, float]]]:
    """Per emotion, (level, mean face change from calm, from the 0.6 picture) in 0..255."""
    pictures, face = part["pictures"].astype(int), part["face"]
    base, n = pictures[0], len(LEVELS)
    out: dict[str, list[tuple[float, float, float]]] = {}
    for j, e in enumerate(BASIS):
        own = pictures[1 + j * n : 1 + (j + 1) * n]
        ref = own[LEVELS.index(0.6)]
        out[e] = [
            (v, float(np.abs(p - base)[face].mean()), float(np.abs(p - ref)[face].mean())) for v, p in zip(LEVELS, own)
        ]
    return out


def save_parts(parts: Sequence[dict[str, Any]], folder: str) -> None:
    """Keep every drawn picture of a sweep (one .npz per character), so another judge can read them later."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    for part in parts:
        np.savez_compressed(
            Path(folder) / f"{part['name']}.npz", pictures=part["pictures"], face=part["face"],
            mixes=np.array([f"{a}+{b}+{w}" for a, b, w in part["mixes"]]), outside=np.array(part["outside"]),
        )  # fmt: skip


def load_parts(folder: str) -> list[dict[str, Any]]:
    """The pictures `save_parts` kept, in character order."""
    parts = []
    for path in sorted(Path(folder).glob("*.npz")):
        with np.load(path) as data:
            mixes = [(a, b, float(w)) for a, b, w in (m.split("+") for m in data["mixes"].tolist())]
            parts.append({"name": path.stem, "pictures": data["pictures"], "face": data["face"], "mixes": mixes,
                          "outside": data["outside"].tolist()})  # fmt: skip
    if not parts:
        raise FileNotFoundError(f"no kept sweep pictures (*.npz) in {folder}")
    return parts


def sweep(
    mode: str = "edit",
    characters: int = 6,
    model: str | None = None,
    steps: int = 20,
    calibration: Calibration | None = None,
    workers: int = 1,
    sheet: str | None = None,
    keep: str | None = None,
) -> dict[str, Any]:
    """Run the issue's grid; returns per-emotion intensity tables, mixture and trust/anticipation figures.

    Characters are independent, so `workers` processes (one thread each) may draw them side by side.
    With `keep`, every picture is saved there for `judge_sweep` to read again.
    """
    cast = held_out_cast(characters)
    jobs = [(k, m, mode, model, steps, calibration) for k, m in enumerate(cast)]
    if workers > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            parts = list(pool.map(_sweep_character, *zip(*jobs)))
    else:
        parts = [_sweep_character(*job) for job in jobs]
    if keep:
        save_parts(parts, keep)
    return judge_sweep(parts, mode, steps, calibration is not None, sheet=sheet)


def judge_sweep(
    parts: Sequence[dict[str, Any]], mode: str, steps: int, calibrated: bool, sheet: str | None = None,
    judge: EmotionJudge | None = None,
) -> dict[str, Any]:
    """The sweep's report from its drawn pictures, read by `judge` (default: the shipped one)."""
    judge = judge or load_judge()
    n = len(LEVELS) * len(BASIS)
    readings, mixes, face_change, outside = {}, [], {}, []
    for part in parts:
        values = read(judge, list(part["pictures"]))
        readings[part["name"]] = values[: 1 + n]
        mixes += [(a, b, w, r) for (a, b, w), r in zip(part["mixes"], values[1 + n :])]
        for e, rows in _face_change(part).items():
            face_change.setdefault(e, []).extend(rows)
        outside += list(part["outside"])
    if sheet:
        write_sheet([_sheet_pictures(part) for part in parts], sheet)
    report = summarise(readings, mixes, face_change, judge_noise(judge), mode, steps, calibrated)
    if outside:
        report["psnr_outside_face_raw_db"] = {
            "min": round(min(outside), 2),
            "median": round(float(np.median(outside)), 2),
            "share_at_least_35": round(float(np.mean(np.array(outside) >= 35)), 3),
        }
    return report


def _sheet_pictures(part: dict[str, Any]) -> dict[str, np.ndarray]:
    pictures, n = part["pictures"], len(LEVELS)
    row = {"base": pictures[0]}
    for j, e in enumerate(BASIS):
        for v in (0.3, 0.6, 1.0):
            row[f"{e} {v:g}"] = pictures[1 + j * n + LEVELS.index(v)]
    for (a, b, w), p in zip(part["mixes"], pictures[1 + n * len(BASIS) :]):
        row[f"{a}+{b} {w:g}"] = p
    return row


SHEET_MIXES = ("anger+disgust", "joy+surprise", "fear+sadness", "trust+anticipation")


def write_sheet(pictures: list[dict[str, np.ndarray]], path: str) -> None:
    """One row per character: calm, each emotion at 0.3 / 0.6 / 1.0, then a few mixtures."""
    from PIL import Image

    rows = []
    for row in pictures:
        cells = [row["base"]] + [row[f"{e} {v:g}"] for e in BASIS for v in (0.3, 0.6, 1.0)]
        cells += [p for key, p in row.items() if key.split(" ")[0] in SHEET_MIXES]
        rows.append(np.concatenate(cells, 1))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    Image.fromarray(np.concatenate(rows, 0)).save(path)


def summarise(
    readings: dict[str, np.ndarray], mixes, face_change, noise: np.ndarray, mode: str, steps: int, calibrated: bool
) -> dict[str, Any]:
    n_levels = len(LEVELS)
    tables: dict[str, Any] = {}
    for j, e in enumerate(BASIS):
        rows = np.stack([r[1 + j * n_levels : 1 + (j + 1) * n_levels, j] for r in readings.values()])  # chars x levels
        calm = np.array([r[0, j] for r in readings.values()])
        means = rows.mean(0)
        requested = np.tile(np.array(LEVELS), (len(rows), 1))
        own = [r[1 + j * n_levels : 1 + (j + 1) * n_levels] for r in readings.values()]
        strong = [k for k, v in enumerate(LEVELS) if v >= 0.6]
        top = np.mean([(o[strong].argmax(1) == j).mean() for o in own])
        changes = face_change[e]
        tables[e] = {
            "calm": round(float(calm.mean()), 3),
            "mean_by_level": [round(float(m), 3) for m in means],
            "std_by_level": [round(float(s), 3) for s in rows.std(0)],
            "spearman_means": round(float(spearmanr(LEVELS, means).statistic), 3),
            "spearman_all": round(float(spearmanr(requested.ravel(), rows.ravel()).statistic), 3),
            "distinct_levels": distinct_levels(list(means), float(noise[j])),
            "judge_noise": round(float(noise[j]), 3),
            "recognised_at_0.6_plus": round(float(top), 3),
            "face_change_0.2_vs_calm": round(float(np.mean([c for v, c, _ in changes if v == 0.2])), 2),
            "face_change_1.0_vs_0.6": round(float(np.mean([d for v, _, d in changes if v == 1.0])), 2),
            "judge_0.2_minus_calm": round(float(means[LEVELS.index(0.2)] - calm.mean()), 3),
            "judge_1.0_minus_0.6": round(float(means[LEVELS.index(1.0)] - means[LEVELS.index(0.6)]), 3),
        }
    both, wrong_top = [], []
    per_pair: dict[str, list[bool]] = {}
    for a, b, _w, r in mixes:
        order = np.argsort(-r)
        top2 = {BASIS[order[0]], BASIS[order[1]]}
        ok = top2 == {a, b}
        both.append(ok)
        wrong_top.append(BASIS[order[0]] not in (a, b))
        per_pair.setdefault(f"{a}+{b}", []).append(ok)
    return {
        "mode": mode,
        "steps": steps,
        "characters": len(readings),
        "calibrated": calibrated,
        "levels": list(LEVELS),
        "emotions": tables,
        "mixtures": {
            "count": len(mixes),
            "both_in_top_two": round(float(np.mean(both)), 3),
            "unrequested_on_top": round(float(np.mean(wrong_top)), 3),
            "per_pair_both": {k: round(float(np.mean(v)), 2) for k, v in per_pair.items()},
        },
    }


# --- calibration ----------------------------------------------------------------------------------


def setting_conditioning(
    emotion: str, word: str, attention: float, base_prompt: str, table: ExpressionTable, strength: float = 1.0
) -> Conditioning:
    """The conditioning of one measured setting: `emotion` drawn with `word` at `attention` and `strength`."""
    unlike = unlike_terms(table, emotion, word, {emotion})
    term = Term(table.emotions[emotion].phrase, (emotion,), 1.0, word, attention, strength, unlike)
    target = swap_phrase(base_prompt, table.neutral_phrase, term.words)
    state = conditioning({emotion: 1.0}, base_prompt, table).state
    return Conditioning(state, base_prompt, table.neutral_phrase, (term,), target, True, table.joiner, composed=True)


def measure_settings(sit: Sitting, table: ExpressionTable, judge: EmotionJudge | None) -> tuple[np.ndarray, np.ndarray]:
    """(response per setting, calm reading per emotion) of one character; settings as in `calibrate`."""
    settings = _settings(table)
    pictures = sit.draw([setting_conditioning(e, w, a, sit.member.prompt, table, s) for e, w, a, s in settings])
    if judge is None:
        base = sit.base.astype(int)
        return np.array([np.abs(p.astype(int) - base)[sit.face].mean() / 255.0 for p in pictures]), np.zeros(len(BASIS))
    values = read(judge, [sit.base, *pictures])
    return np.array([values[1 + k, BASIS.index(e)] for k, (e, *_) in enumerate(settings)]), values[0]


def _settings(table: ExpressionTable) -> list[tuple[str, str, float, float]]:
    """(emotion, word, attention, strength): every emotion over the table's edit strengths, drawn with
    the strongest intensity word at the default attention."""
    word, attention = table.words[-1].word, table.attention.default
    return [(e, word, attention, s) for e in BASIS for s in table.strength.calibrate]


def _calibrate_member(
    member: Member, model: str | None, steps: int, judged: bool, mode: str = "edit"
) -> tuple[np.ndarray, np.ndarray]:
    """One character's responses, read by the calibration judge (not the evaluation's: see `judge.py`)."""
    torch.set_num_threads(1)
    table = expression_table()
    with sittings([member], mode, model, steps, table) as people:
        return measure_settings(next(people), table, load_judge(CALIBRATION_WEIGHTS) if judged else None)


def calibrate_mini(
    model_hash: str, cast: Sequence[Member], model: str | None, steps: int, workers: int = 1, judged: bool = True,
    mode: str = "edit",
) -> Calibration:
    """The calibration of a charforge-mini folder on `cast` (by the judge, or by face change), one
    worker process per character; `mode="fast"` measures the edits of the folder's few-step student."""
    jobs = [(m, model, steps, judged, mode) for m in cast]
    if workers > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            parts = list(pool.map(_calibrate_member, *zip(*jobs)))
    else:
        parts = [_calibrate_member(*job) for job in jobs]
    method = "judge" if judged else "face-change"
    return _curves(model_hash, method, expression_table(), [p[0] for p in parts], [p[1] for p in parts])


def calibrate(
    model_hash: str, people: Iterator[Sitting], table: ExpressionTable, judge: EmotionJudge | None
) -> Calibration:
    """Measure every (emotion, word, weight) setting on `people`; by the judge, or by face change without one."""
    parts = [measure_settings(sit, table, judge) for sit in people]
    return _curves(
        model_hash, "judge" if judge is not None else "face-change", table, [p[0] for p in parts], [p[1] for p in parts]
    )


def _curves(
    model_hash: str, method: str, table: ExpressionTable, responses: list[np.ndarray], calms: list[np.ndarray]
) -> Calibration:
    settings = _settings(table)
    means, calm = np.mean(responses, axis=0), np.mean(calms, axis=0)
    curves = {}
    for j, e in enumerate(BASIS):
        points = [
            Point(word=w, attention=a, strength=st, response=round(float(m), 4))
            for (emo, w, a, st), m in zip(settings, means)
            if emo == e
        ]
        curves[e] = Curve(points=points, calm=round(float(calm[j]), 4))
    return Calibration(model_hash=model_hash, method=method, emotions=curves)
