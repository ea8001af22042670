"""Turn whatever model reference a user has into one light bundle of SD components.

Users arrive with a diffusers folder, a single `.safetensors` checkpoint, a hub id or a pipeline they
already built. All four become the same `ModelBundle` of stock diffusers/transformers classes, so real
SD 1.x/2.x and SDXL checkpoints and charforge's own mini models run through identical code. An SDXL
model is told apart by its second text encoder (folders: `model_index.json`; single files: the
`conditioner.embedders.1` keys of the original layout) and confirmed by its UNet's `text_time`
addition embedding. Only safetensors
weights are ever read (no pickle), and the bundle carries a content hash of the weights so that stored
identities can tell when they were made with a different model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import torch

from charforge.errors import InvalidInput, ModelLoadError
from charforge.models import (  # noqa: F401 (default paths and weights_hash are part of this module's API)
    WEIGHT_COMPONENTS,
    default_bgm_model_path,
    default_model_path,
    hash_files,
    hash_folder,
    read_vocabulary,
    resolve_model_ref,
    weights_hash,
)

log = logging.getLogger(__name__)


@dataclass
class ModelBundle:
    """The components the sampling loop needs, on one device and dtype, plus where they came from."""

    unet: Any
    vae: Any
    text_encoder: Any
    tokenizer: Any
    scheduler: Any
    model_hash: str
    source: str
    device: torch.device
    dtype: torch.dtype
    text_encoder_2: Any = None
    tokenizer_2: Any = None
    pipe: Any = None
    vocabulary: frozenset[str] | None = None  # declared words (charforge.models.VOCABULARY_FILE); None: open

    @property
    def family(self) -> str:
        """ "sdxl" when the UNet takes pooled text + size conditioning (`text_time`), else "sd" (1.x/2.x)."""
        return "sdxl" if self.unet.config.get("addition_embed_type") == "text_time" else "sd"

    @property
    def embeds_guidance(self) -> bool:
        """The UNet takes the guidance scale as an input (`time_cond_proj_dim`: LCM and guided-distilled
        students), so one pass per row replaces classifier-free guidance's two."""
        return self.unet.config.get("time_cond_proj_dim") is not None

    @property
    def text_encoders(self) -> list[tuple[Any, Any]]:
        """(tokenizer, text encoder) pairs whose hidden states are concatenated into the UNet's context."""
        pairs = [(self.tokenizer, self.text_encoder)]
        if self.text_encoder_2 is not None:
            pairs.append((self.tokenizer_2, self.text_encoder_2))
        return pairs

    @property
    def zero_empty_negative(self) -> bool:
        """SDXL checkpoints ask (`force_zeros_for_empty_prompt`) for zeros, not the encoded "", as the
        unconditional input when no negative prompt is given; their pipelines do so by default."""
        return self.family == "sdxl" and bool(self.pipeline().config.get("force_zeros_for_empty_prompt", True))

    def pipeline(self) -> Any:
        """The diffusers pipeline over these very modules, for diffusers' own loaders
        (`load_lora_weights`, `load_textual_inversion`): what they change, the bundle sees."""
        if self.pipe is None:
            cls = _pipeline_class(self.unet.config.in_channels, sdxl=self.family == "sdxl")
            parts = dict(vae=self.vae, text_encoder=self.text_encoder, tokenizer=self.tokenizer, unet=self.unet,
                         scheduler=self.scheduler)  # fmt: skip
            if self.family == "sdxl":
                parts.update(text_encoder_2=self.text_encoder_2, tokenizer_2=self.tokenizer_2)
            else:
                parts.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
            self.pipe = cls(**parts)
        return self.pipe

    @property
    def prediction_type(self) -> str:
        """epsilon, v_prediction or sample: decides how x0 is recovered from the UNet output."""
        return self.scheduler.config.get("prediction_type", "epsilon")

    @property
    def vae_scale_factor(self) -> int:
        """Pixels per latent cell along one side (8 for SD)."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def latent_channels(self) -> int:
        return self.vae.config.latent_channels

    @property
    def is_inpainting(self) -> bool:
        """A 9-channel UNet takes latents + mask + masked-image latents (SD inpainting checkpoints)."""
        return self.unet.config.in_channels == 9

    @property
    def default_size(self) -> int:
        """Native image side in pixels of a square model (the longer side of a non-square one)."""
        return max(self.default_height_width)

    @property
    def default_height_width(self) -> tuple[int, int]:
        """Native (height, width) in pixels, from the UNet's sample size (an int, or [h, w] for
        non-square models such as spectrogram ones)."""
        size = self.unet.config.sample_size
        height, width = (size, size) if isinstance(size, int) else size
        return height * self.vae_scale_factor, width * self.vae_scale_factor

    @property
    def short_hash(self) -> str:
        """The 10-hex-digit form Stable Diffusion front ends print as `Model hash`."""
        return self.model_hash[:10]


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """The caller's device, else $CHARFORGE_DEVICE, else cuda > mps > cpu; refused when it is not there."""
    device = device if device is not None else os.environ.get("CHARFORGE_DEVICE") or None
    if device is not None:
        try:
            chosen = torch.device(device)
        except RuntimeError:
            raise InvalidInput(f"unknown device {device!r}; this torch has {', '.join(_devices())}") from None
        if not _available(chosen):
            have = ", ".join(_devices())
            raise InvalidInput(f"device {device} is not available: this torch ({torch.__version__}) has {have}")
        return chosen
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _devices() -> list[str]:
    found = ["cpu"]
    found += [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    mps = getattr(torch.backends, "mps", None)
    return found + (["mps"] if mps is not None and mps.is_available() else [])


def _available(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count()
    if device.type == "mps":
        return "mps" in _devices()
    return True


def pick_dtype(device: torch.device, dtype: torch.dtype | None = None) -> torch.dtype:
    """fp16 halves memory and doubles speed on GPUs; CPUs have no fast fp16 kernels, so fp32 there."""
    if dtype is not None:
        return dtype
    return torch.float32 if device.type == "cpu" else torch.float16


def load_model(
    ref: str | os.PathLike | Any | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    *,
    config: str | os.PathLike | None = None,
) -> ModelBundle:
    """Load a diffusers folder, a single .safetensors file, a hub id, or adopt a built pipeline
    (None or "charforge-mini": the shipped portrait model; "charforge-mini-bgm": the shipped music model).

    A single-file checkpoint holds weights only; its component configs come from the hub (cached
    after the first time) unless `config` names a diffusers folder or hub id of the same architecture.
    """
    target_device = pick_device(device)
    target_dtype = pick_dtype(target_device, dtype)
    ref = resolve_model_ref(ref)
    if ref is None:
        ref = default_model_path()
        if not (ref / "model_index.json").is_file():
            raise ModelLoadError(f"the default model is not installed at {ref}; pass a model folder, file or hub id")
    if hasattr(ref, "unet") and hasattr(ref, "vae"):
        pipe, source, model_hash = ref, f"<{type(ref).__name__}>", _hash_modules(ref)
    else:
        with _quiet_loading():
            pipe, source, model_hash = _load_pipeline(str(ref), target_dtype, config)
    if getattr(pipe, "text_encoder", None) is None:
        raise ModelLoadError(f"{source} has no first text encoder (an SDXL refiner?); charforge needs a base model")
    with _quiet_loading():
        _place(pipe, target_device, target_dtype)
    log.info("loaded %s on %s/%s (weights sha256 %s)", source, target_device, target_dtype, model_hash[:10])
    return ModelBundle(
        unet=pipe.unet,
        vae=pipe.vae,
        text_encoder=pipe.text_encoder,
        tokenizer=pipe.tokenizer,
        scheduler=pipe.scheduler,
        model_hash=model_hash,
        source=source,
        device=target_device,
        dtype=target_dtype,
        vocabulary=read_vocabulary(source) if Path(source).is_dir() else None,
        text_encoder_2=getattr(pipe, "text_encoder_2", None),
        tokenizer_2=getattr(pipe, "tokenizer_2", None),
        pipe=pipe,
    )


def _place(pipe: Any, device: torch.device, dtype: torch.dtype) -> None:
    """Every weight module on `device` in `dtype`, frozen; an SDXL VAE marked `force_upcast` stays in
    fp32, because it overflows in fp16 (its pipelines upcast it for every encode and decode).

    The convolutional modules (UNet, VAE) keep their 4-D weights channels-last, diffusers' documented
    speed-up: oneDNN and the native CPU kernels convolve NHWC without reordering. On this project's
    models it makes a one-row UNet call ~7% and a VAE decode ~18% faster (benchmarks/bench_fast.py),
    the same numbers to ~1e-6."""
    sdxl = pipe.unet.config.get("addition_embed_type") == "text_time"
    for name in WEIGHT_COMPONENTS:
        module = getattr(pipe, name, None)
        if module is None:
            continue
        module_dtype = torch.float32 if sdxl and name == "vae" and module.config.get("force_upcast") else dtype
        if module.device != device or module.dtype != module_dtype:
            module.to(device=device, dtype=module_dtype)
        if name in ("unet", "vae"):
            module.to(memory_format=torch.channels_last)
        module.eval().requires_grad_(False)


def vae_latents(encoded: Any, generator: torch.Generator | None = None, sample_mode: str = "sample") -> torch.Tensor:
    """diffusers' `retrieve_latents` (a posterior's sample or mode, or a tiny autoencoder's latents).

    Its module is the img2img pipeline's, whose import pulls in transformers' image processors and
    their torchvision advisories; imported quietly, they stay off a CLI's stderr.
    """
    return _retrieve_latents()(encoded, generator, sample_mode)


@cache
def _retrieve_latents() -> Callable[..., torch.Tensor]:
    with _quiet_loading():
        from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img import retrieve_latents
    return retrieve_latents


@contextmanager
def _quiet_loading() -> Iterator[None]:
    """Loading takes seconds; per-component bars and warnings would bury the one line that matters."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    libraries = (diffusers_logging, transformers_logging)
    states = [(lib, lib.is_progress_bar_enabled(), lib.get_verbosity()) for lib in libraries]
    for lib in libraries:
        lib.disable_progress_bar()
        lib.set_verbosity_error()  # their "will try the cache" warnings precede our own clear error
    try:
        yield
    finally:
        for lib, bars, verbosity in states:
            lib.set_verbosity(verbosity)
            if bars:
                lib.enable_progress_bar()


def _pipeline_class(in_channels: int | None = None, sdxl: bool = False):
    from diffusers import (
        StableDiffusionInpaintPipeline,
        StableDiffusionPipeline,
        StableDiffusionXLInpaintPipeline,
        StableDiffusionXLPipeline,
    )

    if sdxl:
        return StableDiffusionXLInpaintPipeline if in_channels == 9 else StableDiffusionXLPipeline
    return StableDiffusionInpaintPipeline if in_channels == 9 else StableDiffusionPipeline


def _options(dtype: torch.dtype, sdxl: bool) -> dict[str, Any]:
    """Loader keywords: SD pipelines carry a safety checker charforge does not use; SDXL ones have none."""
    if sdxl:
        return {"dtype": dtype}
    return {"dtype": dtype, "safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}


def _folder_layout(path: Path) -> tuple[int | None, bool]:
    """(UNet input channels, is SDXL) of a diffusers folder, read from its JSON files."""
    sdxl = _is_sdxl_index(json.loads((path / "model_index.json").read_text(encoding="utf-8")))
    unet_config = path / "unet" / "config.json"
    in_channels = (
        json.loads(unet_config.read_text(encoding="utf-8")).get("in_channels") if unet_config.is_file() else None
    )
    return in_channels, sdxl


def _is_sdxl_index(index: dict[str, Any]) -> bool:
    """A pipeline index with a second text encoder describes an SDXL model."""
    second = index.get("text_encoder_2")
    return isinstance(second, list) and second[0] is not None


def _checkpoint_layout(path: Path) -> tuple[int | None, bool]:
    """(UNet input channels, is SDXL) of an original-layout checkpoint, from its header alone."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        keys = set(handle.keys())
        first_conv = "model.diffusion_model.input_blocks.0.0.weight"
        in_channels = handle.get_slice(first_conv).get_shape()[1] if first_conv in keys else None
    return in_channels, any(key.startswith("conditioner.embedders.1.") for key in keys)


def _load_pipeline(ref: str, dtype: torch.dtype, config: str | os.PathLike | None) -> tuple[Any, str, str]:
    path = Path(ref).expanduser()
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise ModelLoadError(f"model folder {path} has no model_index.json (expected a diffusers folder)")
        _refuse_pickle_only(path)
        try:
            in_channels, sdxl = _folder_layout(path)
            cls = _pipeline_class(in_channels, sdxl)
            pipe = cls.from_pretrained(path, use_safetensors=True, local_files_only=True, **_options(dtype, sdxl))
        except Exception as exc:  # diffusers raises many types; the user needs one line
            raise ModelLoadError(f"cannot load model folder {path}: {_first_line(exc)}") from exc
        return pipe, str(path), hash_folder(path)
    if path.suffix in (".ckpt", ".pt", ".pth", ".bin"):
        raise ModelLoadError(f"refusing {path.name}: pickle checkpoints are unsafe; convert it to .safetensors")
    if path.suffix == ".safetensors":
        if not path.is_file():
            raise ModelLoadError(f"model file not found: {path}")
        try:
            in_channels, sdxl = _checkpoint_layout(path)
            options = _options(dtype, sdxl) | ({} if config is None else {"config": str(config)})
            pipe = _pipeline_class(in_channels, sdxl).from_single_file(str(path), **options)
        except Exception as exc:
            reason = _first_line(exc)
            if config is None and any(word in reason.lower() for word in ("offline", "cache", "connect", "resolve")):
                reason = "its component configs are not cached and the hub is unreachable"
            raise ModelLoadError(
                f"cannot load checkpoint {path.name} ({reason}); pass a diffusers folder of the same "
                "architecture as its config (CLI: --config FOLDER), or use a diffusers folder as the model"
            ) from exc
        return pipe, str(path), hash_files([path], path.parent)
    if path.exists() or ref.startswith((".", "/", "~")) or ref.count("/") != 1:
        raise ModelLoadError(f"model not found: {ref} (pass a diffusers folder, a .safetensors file or a hub id)")
    return _load_from_hub(ref, dtype)


def _load_from_hub(repo_id: str, dtype: torch.dtype) -> tuple[Any, str, str]:
    from diffusers import DiffusionPipeline

    try:
        sdxl = _is_sdxl_index(DiffusionPipeline.load_config(repo_id))  # model_index.json only, then the weights
        pipe = _pipeline_class(None, sdxl).from_pretrained(repo_id, use_safetensors=True, **_options(dtype, sdxl))
    except Exception as exc:
        reason = _first_line(exc)
        if any(word in reason.lower() for word in ("offline", "cache", "connect", "resolve")):
            reason = "the hub is unreachable and it is not in the local cache"
        raise ModelLoadError(
            f"cannot load model '{repo_id}' ({reason}); download it where the hub is reachable and pass its "
            f"local diffusers folder, e.g. --model /path/to/{repo_id.split('/')[-1]}"
        ) from exc
    folder = Path(pipe._name_or_path) if Path(getattr(pipe, "_name_or_path", "")).is_dir() else None
    model_hash = hash_folder(folder) if folder is not None else _hash_modules(pipe)
    return pipe, repo_id, model_hash


def _refuse_pickle_only(path: Path) -> None:
    for name in WEIGHT_COMPONENTS:
        sub = path / name
        if sub.is_dir() and not any(sub.glob("*.safetensors")):
            raise ModelLoadError(
                f"{sub} has no .safetensors weights; charforge never loads pickle weights (convert them first)"
            )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    line = text.splitlines()[0]
    return line if len(line) <= 200 else line[:197] + "..."


def _hash_modules(pipe: Any) -> str:
    """For a pipeline built in memory there are no files: hash the tensors themselves."""
    total = hashlib.sha256()
    for name in WEIGHT_COMPONENTS:
        module = getattr(pipe, name, None)
        if module is None:
            continue
        for key, tensor in sorted(module.state_dict().items()):
            total.update(f"{name}.{key}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
            total.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return total.hexdigest()
