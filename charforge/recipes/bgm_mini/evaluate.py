"""Does a BGM model follow mood? Judged by listeners it was not built with, over a grid fixed up front.

The grid is issue #17's: valence {-0.8, -0.3, 0.3, 0.8} x arousal {0.1, 0.5, 0.9}, each cell rendered
for every lead and held-out seed (seeds 9001... are never used by training or by the data generator)
through the runtime path a user takes (`plan_music` -> `render_plan`: by default the sketch-steered
path of `charforge.audio.steer`, else the prompt alone; diffusion, Griffin-Lim, loudness normalisation).
Every clip is then heard by every key estimator and tempo tracker of
`listeners` (code shared with neither the generator nor `charforge.audio.analysis`), and by the
loudness meter. The report keeps the per-cell tables per estimator, so a good average cannot hide
a bad cell.
"""

from __future__ import annotations

import itertools
import logging
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.stats
from tqdm.auto import tqdm

from charforge.audio.codec import SpectrogramCodec
from charforge.audio.loudness import integrated_loudness, true_peak_dbtp
from charforge.audio.mood import mood_table, plan_music
from charforge.errors import InvalidInput
from charforge.recipes.bgm_mini import listeners

log = logging.getLogger(__name__)

VALENCES = (-0.8, -0.3, 0.3, 0.8)
AROUSALS = (0.1, 0.5, 0.9)
EVAL_LEADS = ("piano", "pluck")
FIRST_EVAL_SEED = 9001


def _high_band_share(samples: np.ndarray, sample_rate: int, above_hz: float = 4000.0) -> float:
    power = np.abs(np.fft.rfft(samples.astype(np.float64))) ** 2
    return float(power[np.fft.rfftfreq(samples.size, 1 / sample_rate) > above_hz].sum() / max(power.sum(), 1e-30))


def grid_clips(seeds: int = 4, leads: tuple[str, ...] = EVAL_LEADS) -> list[dict[str, Any]]:
    """The evaluation grid, one entry per clip (valence, arousal, lead, seed)."""
    if seeds < 1 or not leads:
        raise InvalidInput("need at least one seed and one lead")
    return [{"valence": v, "arousal": a, "lead": lead, "seed": FIRST_EVAL_SEED + s}
            for v, a, lead, s in itertools.product(VALENCES, AROUSALS, leads, range(seeds))]


def hear(samples: np.ndarray, sample_rate: int) -> dict[str, Any]:
    """Everything the listeners report about one clip."""
    keys = listeners.estimate_keys(samples, sample_rate)
    return {
        "keys": {name: key.name for name, key in keys.items()},
        "modes": {name: key.mode for name, key in keys.items()},
        "bpm": {name: round(track(samples, sample_rate), 2) for name, track in listeners.TEMPO_TRACKERS.items()},
        "lufs": round(integrated_loudness(samples, sample_rate), 3),
        "true_peak_dbtp": round(true_peak_dbtp(samples, sample_rate), 3),
        "share_above_4khz": _high_band_share(samples, sample_rate),
    }


def _cell_tables(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per estimator a valence x arousal table of mode accuracy, per tracker one of median tempo."""
    def cell(v: float, a: float) -> list[dict[str, Any]]:
        return [r for r in rows if r["valence"] == v and r["arousal"] == a]

    estimators = list(rows[0]["modes"])
    def hit(r: dict[str, Any], name: str) -> bool:
        return (r["modes"][name] == "major") == (r["valence"] > 0)

    mode = {name: {f"{v:+.1f}": {f"{a:.1f}": float(np.mean([hit(r, name) for r in cell(v, a)])) for a in AROUSALS}
                   for v in VALENCES} for name in estimators}
    tempo = {name: {f"{v:+.1f}": {f"{a:.1f}": statistics.median(r["bpm"][name] for r in cell(v, a)) for a in AROUSALS}
                    for v in VALENCES} for name in listeners.TEMPO_TRACKERS}
    return {"mode_accuracy": mode, "median_bpm": tempo}


def _distinct_moods(clips: dict[tuple, np.ndarray]) -> dict[str, float]:
    """The most similar pair of different moods with the same lead and seed: |correlation| and the
    residual after the best gain (0 would mean one is a gain-scaled copy of the other)."""
    worst_corr, worst_residual = 0.0, np.inf
    groups: dict[tuple, list[tuple[tuple, np.ndarray]]] = {}
    for (v, a, lead, seed), y in clips.items():
        groups.setdefault((lead, seed), []).append(((v, a), y))
    for members in groups.values():
        for (_, x), (_, y) in itertools.combinations(members, 2):
            n = min(x.size, y.size)
            x64, y64 = x[:n].astype(np.float64), y[:n].astype(np.float64)
            corr = abs(float(np.corrcoef(x64, y64)[0, 1]))
            gain = float(x64 @ y64 / max(x64 @ x64, 1e-30))
            residual = float(np.linalg.norm(y64 - gain * x64) / max(np.linalg.norm(y64), 1e-30))
            worst_corr, worst_residual = max(worst_corr, corr), min(worst_residual, residual)
    return {"max_abs_correlation": worst_corr, "min_gain_residual": worst_residual}


def summarize(rows: list[dict[str, Any]], target_lufs: float) -> dict[str, Any]:
    """The done-when figures of issue #17 from per-clip rows."""
    out: dict[str, Any] = {"clips": len(rows), "mode": {}, "tempo": {}}
    tables = _cell_tables(rows)
    for name, table in tables["mode_accuracy"].items():
        hits = [(r["modes"][name] == "major") == (r["valence"] > 0) for r in rows]
        cells = [value for per_a in table.values() for value in per_a.values()]
        out["mode"][name] = {"accuracy": float(np.mean(hits)), "worst_cell": float(min(cells)),
                             "major": float(np.mean([h for h, r in zip(hits, rows) if r["valence"] > 0])),
                             "minor": float(np.mean([h for h, r in zip(hits, rows) if r["valence"] < 0]))}
    arousal = [r["arousal"] for r in rows]
    for name in listeners.TEMPO_TRACKERS:
        medians = [statistics.median(r["bpm"][name] for r in rows if r["arousal"] == a) for a in AROUSALS]
        rho = scipy.stats.spearmanr(arousal, [r["bpm"][name] for r in rows]).statistic
        out["tempo"][name] = {"median_by_arousal": dict(zip((f"{a:.1f}" for a in AROUSALS), medians)),
                              "min_gap": float(min(np.diff(medians))), "spearman": float(rho)}
    lufs = np.array([r["lufs"] for r in rows])
    out["loudness"] = {"target_lufs": target_lufs, "max_deviation_lu": float(np.max(np.abs(lufs - target_lufs))),
                       "max_true_peak_dbtp": float(max(r["true_peak_dbtp"] for r in rows)),
                       "median_share_above_4khz": float(np.median([r["share_above_4khz"] for r in rows]))}
    out["tables"] = tables
    return out


def evaluate_bgm(
    model: str | Path | Any, seeds: int = 4, leads: tuple[str, ...] = EVAL_LEADS, seconds: float = 10.0,
    steps: int = 20, guidance: float = 5.0, sketch: bool = True, music: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Render the grid with `model` and return the summary, the per-cell tables and the per-clip rows.

    `sketch` renders through the default, sketch-steered path (the table's `[sketch]` settings);
    False lets the model draw from the prompt alone. `music` is merged into the mood table as a
    character's `settings["music"]` would be (e.g. `{"sketch": {"pitch": 0.0}}` for an ablation).
    """
    from charforge.character.bgm import music_table, render_plan
    from charforge.engine import load_model

    if steps < 1 or seconds <= 0:
        raise InvalidInput("need steps >= 1 and seconds > 0")
    bundle = model if hasattr(model, "unet") else load_model(model)
    rows: list[dict[str, Any]] = []
    clips: dict[tuple, np.ndarray] = {}
    render_seconds = 0.0
    target = mood_table().loudness_lufs
    for entry in tqdm(grid_clips(seeds, leads), desc="evaluate BGM", mininterval=5.0):
        table = music_table({**(music or {}), "lead": entry["lead"]}, sketch)
        plan = plan_music(entry["valence"], entry["arousal"], table)
        t0 = time.perf_counter()
        clip = render_plan(plan, seconds=seconds, seed=entry["seed"], model=bundle, steps=steps, guidance=guidance)
        render_seconds += time.perf_counter() - t0
        clips[(entry["valence"], entry["arousal"], entry["lead"], entry["seed"])] = clip.samples
        rows.append({**entry, "prompt": plan.prompt, "sketch": plan.sketch and plan.sketch.model_dump(),
                     **hear(clip.samples, clip.sample_rate)})
    report = summarize(rows, target)
    report["distinct_moods"] = _distinct_moods(clips)
    report["realtime_factor"] = len(rows) * seconds / render_seconds
    report["settings"] = {"seeds": seeds, "leads": list(leads), "seconds": seconds, "steps": steps,
                          "guidance": guidance, "sketch": rows[0]["sketch"], "music": music or {},
                          "estimators": listeners.key_estimators(),
                          "trackers": list(listeners.TEMPO_TRACKERS)}
    report["rows"] = rows
    return report


def format_report(report: dict[str, Any]) -> str:
    """Plain-text tables: the summary, then per estimator its valence x arousal cells."""
    lines = [f"{report['clips']} clips; {report['settings']}"]
    lines.append("mode matches the sign of valence:")
    for name, m in report["mode"].items():
        lines.append(f"  {name:24s} {m['accuracy']:.1%} (major {m['major']:.1%}, minor {m['minor']:.1%}, "
                     f"worst cell {m['worst_cell']:.1%})")
    lines.append("tempo (median bpm at arousal 0.1 / 0.5 / 0.9, smallest gap, Spearman):")
    for name, t in report["tempo"].items():
        medians = " / ".join(f"{b:.1f}" for b in t["median_by_arousal"].values())
        lines.append(f"  {name:24s} {medians}, gap {t['min_gap']:.1f}, rho {t['spearman']:.3f}")
    loud = report["loudness"]
    lines.append(f"loudness: max deviation {loud['max_deviation_lu']:.2f} LU from {loud['target_lufs']} LUFS, "
                 f"max true peak {loud['max_true_peak_dbtp']:.2f} dBTP, median share above 4 kHz "
                 f"{loud['median_share_above_4khz']:.4f}")
    if "distinct_moods" in report:
        d = report["distinct_moods"]
        lines.append(f"most similar different moods: |r| {d['max_abs_correlation']:.3f}, "
                     f"gain residual {d['min_gain_residual']:.3f}")
    if "realtime_factor" in report:
        lines.append(f"realtime factor (generate + decode + normalise): {report['realtime_factor']:.2f}x")
    header = "valence \\ arousal " + " ".join(f"{a:>7.1f}" for a in AROUSALS)
    for kind, tables, fmt in (("mode accuracy", report["tables"]["mode_accuracy"], "{:>7.0%}"),
                              ("median bpm", report["tables"]["median_bpm"], "{:>7.1f}")):
        for name, table in tables.items():
            lines += ["", f"{kind} - {name}", header]
            lines += [f"{v:>17s} " + " ".join(fmt.format(x) for x in per_a.values()) for v, per_a in table.items()]
    return "\n".join(lines)


def _kk_mode(samples: np.ndarray, sample_rate: int) -> str:
    return listeners.profile_key(listeners.mean_chroma(samples, sample_rate), "kk").mode


def vae_mode_survival(
    model: str | Path | Any, samples: int = 24, seed: int = 99, preset: str = "full",
) -> dict[str, float]:
    """Share of held-out training-style spectrograms whose mode (independent KK listener) survives the VAE.

    The diffusion model can only be as faithful as its autoencoder: a minor third the VAE blurs
    into a major one is lost before sampling starts. Also reports the mean absolute pixel error.
    """
    import torch

    from charforge.engine import load_model
    from charforge.recipes.bgm_mini.dataset import BGMSource

    bundle = model if hasattr(model, "unet") else load_model(model)
    source = BGMSource(seed, samples, preset)
    codec = SpectrogramCodec(preset)
    sr = codec.preset.sample_rate
    kept = before = 0
    errors = []
    for i in tqdm(range(samples), desc="VAE round trip", mininterval=5.0):
        x, _ = source[i]
        with torch.no_grad():
            z = bundle.vae.encode(x[None].to(bundle.device, bundle.vae.dtype)).latent_dist.mean
            y = bundle.vae.decode(z).sample[0].float().cpu()
        grey = ((y.mean(dim=0).clamp(-1, 1) + 1) * 127.5).round().byte().numpy()
        errors.append(float(np.abs(grey.astype(np.float32) - source.image(i).astype(np.float32)).mean()))
        truth = source.sample(i).spec.mode
        before += _kk_mode(codec.image_to_audio(source.image(i), seed=0), sr) == truth
        kept += _kk_mode(codec.image_to_audio(grey, seed=0), sr) == truth
    return {"samples": samples, "mode_accuracy_codec_only": before / samples,
            "mode_accuracy_through_vae": kept / samples, "mean_abs_pixel_error": float(np.mean(errors))}
