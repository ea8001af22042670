"""The one training recipe of charforge-mini: renderer data + mini shapes + the generic trainer.

`charforge train portrait-mini --out DIR` calls `train_portrait_mini`; the run directory holds the
checkpoint (resumable) and, when training ends, the exported diffusers folder in DIR/model.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from charforge.errors import InvalidInput
from charforge.models import write_vocabulary
from charforge.recipes.portrait_mini import render
from charforge.recipes.portrait_mini.architecture import (
    GROWN_PREFIXES,
    IMAGE_SIZE,
    LATENT_SIZE,
    scheduler_config,
    text_config,
    unet_config,
    vae_config,
)
from charforge.recipes.portrait_mini.dataset import PortraitSource
from charforge.recipes.portrait_mini.population import FACE_MIX
from charforge.recipes.portrait_mini.tokenizer import build_tokenizer, caption_words
from charforge.recipes.training import LatentDiffusionTrainer, ModelSpec, TrainConfig
from charforge.recipes.training.budget import Budget
from charforge.recipes.training.checkpoint import load_checkpoint
from charforge.recipes.training.runs import grow_run, load_run

log = logging.getLogger(__name__)

DATA_SEED = 1234
DATASET_SIZE = 10000


def portrait_spec(tokenizer_dir: str | Path) -> ModelSpec:
    tok = build_tokenizer(tokenizer_dir)
    return ModelSpec(
        vae_config(),
        unet_config(),
        text_config(len(tok), tok.bos_token_id, tok.eos_token_id, tok.pad_token_id),
        scheduler_config(),
        tok,
    )


FACE_WEIGHT = 3.0


def face_loss_weight(size: int = LATENT_SIZE, weight: float = FACE_WEIGHT) -> list[list[float]]:
    """FACE_WEIGHT on the (fixed) face ellipse, 1 elsewhere, at latent resolution.

    The expression lives in a few latent pixels of eyes, brows and mouth; with a uniform loss it is a
    sliver of the objective and, in a short CPU run, was the last thing learnt.
    """
    (cx, cy), (rx, ry), scale = render.HEAD_CENTER, render.HEAD_RADII, render.CANVAS / size
    ys, xs = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    inside = ((xs * scale - cx) / (rx + scale)) ** 2 + ((ys * scale - cy) / (ry + scale)) ** 2 <= 1
    return torch.where(inside, weight, 1.0).tolist()


def edit_cells(source: PortraitSource, count: int = 256) -> list[list[float]]:
    """The latent cells an expression edit may change on the renderer's portraits: the union of their
    face masks, grown as the expression table grows a character's face mask."""
    from charforge.character.edits import latent_mask
    from charforge.emotion.conditioning import expression_table

    dilation = expression_table().edit.mask_dilation
    faces = [torch.from_numpy(render.render(p)[1]["face"]) for p in source.portraits[:count]]
    cells = torch.stack([latent_mask(f, IMAGE_SIZE // LATENT_SIZE, dilation) for f in faces]).amax(0)
    return cells.tolist()


def recipe_config(seed: int, minutes: float, decoder_minutes: float = 0.0) -> TrainConfig:
    # small VAE batches: on 2 CPU cores the autoencoder is limited by optimizer steps, not by data
    return TrainConfig(
        seed=seed,
        minutes=minutes,
        vae_fraction=0.25,
        vae_batch=8,
        vae_lr=1e-3,
        unet_lr=8e-4,
        text_lr=4e-4,
        decoder_minutes=decoder_minutes,
        decoder_lr=1e-3,
        loss_weight=face_loss_weight(),
    )


def train_portrait_mini(
    out: str | Path,
    minutes: float = 55.0,
    resume: bool = False,
    seed: int = 0,
    decoder_minutes: float = 0.0,
    dataset_size: int = DATASET_SIZE,
    threads: int | None = None,
    budget: Budget | None = None,
) -> Path:
    """Train (or resume) in `out`, export to `out/model`, return that folder.

    `budget` is the whole call's wall-clock time (default: `minutes` from now), export included;
    `decoder_minutes` are the last of `minutes`, not extra.
    """
    budget = budget or Budget.minutes(minutes)
    out = Path(out)
    source = PortraitSource(DATA_SEED + seed, dataset_size)
    if resume and (out / "spec.json").is_file():
        trainer = load_run(out, source)
        # a resumed run may be given more (or less) time
        trainer.cfg.minutes, trainer.cfg.decoder_minutes = minutes, decoder_minutes
        recipe = recipe_config(seed, minutes)
        trainer.cfg.decoder_lr, trainer.cfg.loss_weight = recipe.decoder_lr, recipe.loss_weight
    else:
        spec = portrait_spec(out / "tokenizer")
        trainer = LatentDiffusionTrainer(spec, source, recipe_config(seed, minutes, decoder_minutes), out)
    if threads is not None:
        trainer.cfg.threads = threads
    trainer.run(budget)
    return export_portrait_mini(trainer, out / "model")


def export_portrait_mini(trainer: LatentDiffusionTrainer, folder: str | Path) -> Path:
    """The diffusers folder, with the caption words it was trained on declared as its vocabulary."""
    folder = trainer.export(folder)
    write_vocabulary(folder, caption_words())
    return folder


FINETUNE_LR = 4e-4
# small batches: on a shared CPU a fine-tune is limited by how many updates it gets, not by data
FINETUNE_BATCH = 8
# new words start from the embedding of a related word the model already draws
RELATED_WORDS = {"gazing": "looking", "trustingly": "happily", "waiting": "gasping", "eagerly": "surprised"}


def init_from_model(
    model: str | Path,
    out: str | Path,
    minutes: float,
    seed: int = 0,
    dataset_size: int = DATASET_SIZE,
    threads: int | None = None,
    face_mix: Sequence[float] = FACE_MIX,
    lr: float = FINETUNE_LR,
    emphasis: Mapping[str, float] | None = None,
    decoder_only: bool = False,
    locality: float = 0.0,
) -> LatentDiffusionTrainer:
    """A UNet-phase run in `out` warm-started from the exported model folder `model` (VAE kept as is).

    `decoder_only`: a decoder-phase run instead, face-weighted, the encoder and so the latent space kept,
    so `model`'s UNet, and every inversion made with it, still fit. That is the run to take when the
    decoder, not the UNet, is what loses a face (a round trip of the renders reads weaker than they do).
    `locality` (with `decoder_only`) weighs a term that keeps a change of the face's latent cells
    (`edit_cells`) from reaching decoded pixels outside them: the decoder's convolutions and mid-block
    attention otherwise carry an expression edit a few pixels into the hair and background.

    The tokenizer is `model`'s plus the renderer's new caption words (old ids and tokenisations
    unchanged); the text encoder grows one embedding row per new token, initialised from a related
    word or from the mean of the pieces the word used to split into. The dataset is encoded with
    `model`'s VAE under its own scaling factor, so the UNet keeps the latent space it was trained in.
    """
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPTextModel, CLIPTokenizer

    from charforge.recipes.portrait_mini.tokenizer import extend_tokenizer

    if locality and not decoder_only:
        raise InvalidInput("--locality trains the decoder: give it with --decoder-only")
    model, out = Path(model), Path(out)
    if (out / "checkpoint").exists():
        raise InvalidInput(f"{out} already holds a training run; pass --resume to continue it")
    old_tok = CLIPTokenizer.from_pretrained(str(model / "tokenizer"))
    added = extend_tokenizer(model / "tokenizer", out / "tokenizer")
    tok = CLIPTokenizer.from_pretrained(str(out / "tokenizer"))
    vae = AutoencoderKL.from_pretrained(str(model / "vae"))
    unet = UNet2DConditionModel.from_pretrained(str(model / "unet"))
    text = CLIPTextModel.from_pretrained(str(model / "text_encoder"))

    def plain(config) -> dict:
        return {k: v for k, v in dict(config).items() if not k.startswith("_")}

    text_cfg = {
        **{k: v for k, v in text.config.to_dict().items() if k in text_config(0, 0, 0, 0)},
        "vocab_size": len(tok),
    }
    spec = ModelSpec(plain(vae.config), plain(unet.config), text_cfg, scheduler_config(), tok)
    cfg = recipe_config(seed, minutes)
    cfg.vae_fraction, cfg.unet_lr, cfg.text_lr, cfg.unet_batch = 0.0, lr, lr, FINETUNE_BATCH
    cfg.extra["face_mix"] = list(face_mix)  # the data of a resumed run must be the same portraits
    cfg.extra["emphasis"] = dict(emphasis or {})
    cfg.extra["decoder_only"] = decoder_only
    if threads is not None:
        cfg.threads = threads
    torch.set_num_threads(cfg.threads)
    source = PortraitSource(DATA_SEED + seed, dataset_size, mix=face_mix, emphasis=emphasis)
    if decoder_only:
        cfg.decoder_minutes, cfg.decoder_lr = minutes, lr
        cfg.decoder_weight = face_loss_weight(IMAGE_SIZE)
        cfg.decoder_locality, cfg.locality_cells = locality, edit_cells(source) if locality else None
    trainer = LatentDiffusionTrainer(spec, source, cfg, out)
    trainer.vae.load_state_dict(vae.state_dict())
    trainer.unet.load_state_dict(unet.state_dict())
    state = text.state_dict()
    key = next(k for k in state if k.endswith("embeddings.token_embedding.weight"))
    old_rows = state[key]
    rows = torch.cat([old_rows, torch.zeros(len(tok) - len(old_rows), old_rows.shape[1])])
    vocab = {i: t for t, i in tok.get_vocab().items()}
    for token_id in added:
        word = vocab[token_id].removesuffix("</w>")
        source_word = RELATED_WORDS.get(word, word)
        pieces = old_tok(source_word, add_special_tokens=False).input_ids
        rows[token_id] = old_rows[pieces].mean(0)
    state[key] = rows
    trainer.text_encoder.load_state_dict(state)
    for ema, module in ((trainer.ema_unet, trainer.unet), (trainer.ema_text, trainer.text_encoder)):
        ema.shadow_params = [p.detach().clone() for p in module.parameters()]
    trainer.phase, trainer.finished = "unet", {"vae": {"step": 0, "elapsed": 0.0}}
    if decoder_only:
        trainer.phase, trainer.finished["unet"] = "decoder", {"step": 0, "elapsed": 0.0}
    _encode_with(trainer, vae.config.scaling_factor, out / "latents.safetensors", save_file)
    trainer.save()
    log.info("warm start from %s: %d new tokens", model, len(added))
    return trainer


@torch.no_grad()
def _encode_with(trainer: LatentDiffusionTrainer, scaling: float, path: Path, save_file) -> None:
    trainer.vae.eval()
    means, stds = [], []
    n = len(trainer.source)
    for start in range(0, n, 64):
        images = torch.stack([trainer.source[k][0] for k in range(start, min(n, start + 64))])
        dist = trainer.vae.encode(images).latent_dist
        means.append(dist.mean.half())
        stds.append(dist.std.half())
        if start % 1280 == 0:
            log.info("encoded %d / %d", start, n)
    trainer.vae.register_to_config(scaling_factor=scaling)
    save_file(
        {
            "mean": torch.cat(means).contiguous(),
            "std": torch.cat(stds).contiguous(),
            "scaling_factor": torch.tensor(scaling),
        },
        str(path),
    )


def finetune_portrait_mini(
    out: str | Path,
    init_from: str | Path | None,
    minutes: float,
    resume: bool = False,
    seed: int = 0,
    threads: int | None = None,
    budget: Budget | None = None,
    face_mix: Sequence[float] = FACE_MIX,
    lr: float = FINETUNE_LR,
    emphasis: Mapping[str, float] | None = None,
    decoder_only: bool = False,
    locality: float = 0.0,
) -> Path:
    """Fine-tune an exported model (`init_from`) on the current renderer's data; export to `out/model`.

    `budget` is the whole call's wall-clock time (default: `minutes` from now), the warm start's
    latent encoding and the export included. `face_mix` (shares of calm, one-, two- and three-emotion
    faces), `emphasis` (how often each emotion is drawn, as `population.random_state`), `lr` and
    `decoder_only` and `locality` (as `init_from_model`) are a new run's; a resumed run keeps the ones it
    started with.
    """
    budget = budget or Budget.minutes(minutes)
    out = Path(out)
    if resume and (out / "spec.json").is_file():
        _, meta = load_checkpoint(out / "checkpoint")
        extra = meta["config"].get("extra", {})
        source = PortraitSource(
            DATA_SEED + seed, DATASET_SIZE, mix=extra.get("face_mix", FACE_MIX), emphasis=extra.get("emphasis")
        )
        trainer = load_run(out, source)
        trainer.cfg.minutes, trainer.cfg.unet_batch = minutes, FINETUNE_BATCH
        trainer.cfg.decoder_minutes = minutes if extra.get("decoder_only") else 0.0
        if threads is not None:
            trainer.cfg.threads = threads
    else:
        if init_from is None:
            raise InvalidInput("a new fine-tune needs --init-from MODEL_FOLDER")
        trainer = init_from_model(
            init_from, out, minutes, seed=seed, threads=threads, face_mix=face_mix, lr=lr, emphasis=emphasis,
            decoder_only=decoder_only, locality=locality,
        )  # fmt: skip
    trainer.run(budget)
    return export_portrait_mini(trainer, out / "model")


def branch_decoder_run(
    main_run: str | Path, branch: str | Path, decoder_minutes: float, seed: int = 0, dataset_size: int = DATASET_SIZE
) -> Path:
    """Run the decoder phase in a copy of `main_run` taken once its VAE phase is over.

    The decoder phase depends only on the VAE phase's result (the encoder and the cached latents), not
    on the UNet, so it can run beside the UNet phase in a second process; `graft_decoder` then joins
    the two. This is how the shipped model fitted its decoder phase into the hour.
    """
    import json
    import shutil

    main_run, branch = Path(main_run), Path(branch)
    state = json.loads((main_run / "checkpoint" / "state.json").read_text(encoding="utf-8"))
    if state["phase"] == "vae":
        raise InvalidInput(f"{main_run} is still in its VAE phase; branch once the UNet phase has started")
    branch.mkdir(parents=True, exist_ok=True)
    for name in ("checkpoint", "tokenizer"):
        shutil.copytree(main_run / name, branch / name, dirs_exist_ok=True)
    for name in ("spec.json", "latents.safetensors"):
        shutil.copy2(main_run / name, branch / name)
    state.update(phase="decoder", step=0, elapsed=0.0)
    (branch / "checkpoint" / "state.json").write_text(json.dumps(state, indent=2), encoding="utf-8")
    trainer = load_run(branch, PortraitSource(DATA_SEED + seed, dataset_size))
    trainer.cfg.decoder_minutes, trainer.cfg.decoder_lr = decoder_minutes, recipe_config(seed, 1.0).decoder_lr
    trainer.run()
    return branch


def graft_decoder(main_run: str | Path, branch: str | Path, folder: str | Path, seed: int = 0) -> Path:
    """Export `main_run` with the VAE fine-tuned in `branch` (same encoder, better decoder)."""
    from safetensors.torch import load_file

    trainer = load_run(main_run, PortraitSource(DATA_SEED + seed, 1))
    vae = load_file(str(Path(branch) / "checkpoint" / "vae.safetensors"))
    encoder_keys = [k for k in vae if k.startswith(("encoder.", "quant_conv."))]
    current = trainer.vae.state_dict()
    if any(not vae[k].equal(current[k]) for k in encoder_keys):
        raise InvalidInput(f"{branch} does not share {main_run}'s encoder; it is not a decoder branch of it")
    trainer.vae.load_state_dict(vae)
    return export_portrait_mini(trainer, folder)


def grow_portrait_run(
    old_run: str | Path, new_run: str | Path, seed: int = 0, dataset_size: int = DATASET_SIZE
) -> Path:
    """Warm-start a run of the current architecture from a run of the previous one (see the model card)."""
    grow_run(old_run, new_run, unet_config(), PortraitSource(DATA_SEED + seed, dataset_size), zero=GROWN_PREFIXES)
    return Path(new_run)


if __name__ == "__main__":  # the extra steps of the shipped run; see the model card
    import argparse

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    parser = argparse.ArgumentParser(prog="python -m charforge.recipes.portrait_mini.recipe")
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("branch", help="decoder phase in a copy of a run whose UNet phase has started")
    b.add_argument("main_run")
    b.add_argument("branch")
    b.add_argument("--decoder-minutes", type=float, default=30.0)
    g = sub.add_parser("graft", help="export a run with its decoder branch's VAE")
    g.add_argument("main_run")
    g.add_argument("branch")
    g.add_argument("folder")
    w = sub.add_parser("grow", help="warm-start a run of the current UNet architecture from an older run")
    w.add_argument("old_run")
    w.add_argument("new_run")
    args = parser.parse_args()
    if args.cmd == "grow":
        sys.stdout.write(f"{grow_portrait_run(args.old_run, args.new_run)}\n")
    elif args.cmd == "branch":
        branch_decoder_run(args.main_run, args.branch, args.decoder_minutes)
    else:
        sys.stdout.write(f"{graft_decoder(args.main_run, args.branch, args.folder)}\n")


def is_finetune_run(out: str | Path) -> bool:
    """Whether the run in `out` is a fine-tune (its VAE is frozen), so --resume continues it as one."""
    state = Path(out) / "checkpoint" / "state.json"
    if not state.is_file():
        return False
    return json.loads(state.read_text(encoding="utf-8")).get("config", {}).get("vae_fraction") == 0.0
