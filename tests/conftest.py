"""Tiny random Stable-Diffusion components, built in code and saved as real diffusers folders.

Algorithm properties (equality with diffusers pipelines, hooks, inversion round trips) do not need
trained weights, only the same component classes a real checkpoint uses. Building them here keeps the
suite offline and every code path a few seconds on CPU. The folders are written once per session with
`save_pretrained` (safetensors), so loading goes through exactly the path a user's checkpoint takes.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# librosa compiles its numba kernels with `cache=True` into its own package folder; two pytest-xdist
# workers writing that cache at once can leave a half-written entry that the other loads and crashes
# on (a segfault in beat tracking, seen in a fresh virtual environment). One cache folder per worker.
if "PYTEST_XDIST_WORKER" in os.environ and "NUMBA_CACHE_DIR" not in os.environ:
    os.environ["NUMBA_CACHE_DIR"] = str(
        Path(tempfile.gettempdir()) / f"charforge-numba-{os.getuid()}-{os.environ['PYTEST_XDIST_WORKER']}"
    )
# Each test chooses its database itself (SQLite in its temp workspace, or the test PostgreSQL server).
os.environ.pop("CHARFORGE_DB", None)
# Tiny models gain nothing from intra-op threads, and on a shared 2-core machine extra threads only
# oversubscribe (a tiny UNet call goes from ~0.1 s to >1 s). Override with CHARFORGE_TORCH_THREADS.
torch.set_num_threads(int(os.environ.get("CHARFORGE_TORCH_THREADS", "1")))

# Words that become single tokens in the tiny tokenizer, so tests can address them one token each
# (Prompt-to-Prompt word alignment, attention maps). Anything else still tokenizes, byte by byte.
TINY_WORDS = (
    "a", "an", "the", "of", "and", "with", "in", "on", "photo", "portrait", "painting", "girl", "boy",
    "woman", "man", "cat", "dog", "red", "blue", "green", "black", "white", "long", "short", "hair",
    "eyes", "outfit", "dress", "smiling", "smile", "sad", "happy", "angry", "crying", "surprised",
    "face", "background", "forest", "city", "sky", "night", "day", "music", "piano", "calm", "upbeat",
)

TINY_IMAGE_SIZE = 32  # pixels; the tiny VAE downsamples by 2, so latents are 16x16


def _byte_symbols() -> list[str]:
    """GPT-2/CLIP byte-level alphabet: printable bytes map to themselves, the rest to chars above 255."""
    printable = set(range(33, 127)) | set(range(161, 173)) | set(range(174, 256))
    symbols, shifted = [], 0
    for b in range(256):
        if b in printable:
            symbols.append(chr(b))
        else:
            symbols.append(chr(256 + shifted))
            shifted += 1
    return symbols


def build_tiny_tokenizer(**options):
    """A real `CLIPTokenizer` (byte-level BPE, 77 tokens) from an in-memory vocabulary: no download.

    `options` go to the tokenizer (SDXL's second tokenizer pads with "!", not with EOS)."""
    from transformers import CLIPTokenizer

    vocab: dict[str, int] = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for symbol in _byte_symbols():
        vocab.setdefault(symbol, len(vocab))
    for symbol in _byte_symbols():
        vocab.setdefault(symbol + "</w>", len(vocab))
    merges: list[tuple[str, str]] = []
    for word in TINY_WORDS:
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        merged = pieces[0]
        for piece in pieces[1:]:
            if (merged, piece) not in merges:
                merges.append((merged, piece))
            merged += piece
            vocab.setdefault(merged, len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77, **options)


def save_tiny_lcm_student(folder):
    """A tiny LCM-style student (a UNet that takes the guidance scale, diffusers' `time_cond_proj_dim`)
    saved as a diffusers folder at `folder`, which is returned."""
    from diffusers import LatentConsistencyModelPipeline, LCMScheduler, UNet2DConditionModel

    parts = build_tiny_components()
    torch.manual_seed(0)
    parts["unet"] = UNet2DConditionModel(
        sample_size=TINY_IMAGE_SIZE // 2, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32, attention_head_dim=8,
        time_cond_proj_dim=64,
    ).eval()  # fmt: skip
    parts["scheduler"] = LCMScheduler.from_config(parts["scheduler"].config)
    LatentConsistencyModelPipeline(**parts, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False).save_pretrained(folder)  # fmt: skip
    return folder


def build_tiny_components(in_channels: int = 4) -> dict:
    """Seeded tiny UNet/VAE/CLIP/DDIM in SD-1.x layout (cross-attention in down, mid and up blocks)."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = build_tiny_tokenizer()
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=TINY_IMAGE_SIZE // 2,
        in_channels=in_channels,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
    )
    torch.manual_seed(0)
    vae = AutoencoderKL(
        block_out_channels=(32, 64),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        sample_size=TINY_IMAGE_SIZE,
    )
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
            hidden_size=32,
            intermediate_size=37,
            layer_norm_eps=1e-05,
            num_attention_heads=4,
            num_hidden_layers=2,
            vocab_size=len(tokenizer),
            max_position_embeddings=77,
        )
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    return {
        "unet": unet.eval(),
        "vae": vae.eval(),
        "text_encoder": text_encoder.eval(),
        "tokenizer": tokenizer,
        "scheduler": scheduler,
    }


def build_tiny_bgm_components() -> dict:
    """Tiny random components shaped for the `mini` spectrogram preset (64 mel x 256 frames): a 4x VAE
    and cross-attention only at 8 x 32, so BGM tests stay fast on CPU."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    parts = build_tiny_components()
    torch.manual_seed(0)
    parts["unet"] = UNet2DConditionModel(
        sample_size=[16, 64], in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8,
    ).eval()
    torch.manual_seed(0)
    parts["vae"] = AutoencoderKL(
        block_out_channels=(16, 32, 32), in_channels=3, out_channels=3, latent_channels=4, sample_size=64,
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3, norm_num_groups=16,
    ).eval()
    return parts


def _save_pipeline(pipeline_cls, components: dict, path: Path) -> Path:
    pipe = pipeline_cls(**components, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(path, safe_serialization=True)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A diffusers folder (model_index.json + safetensors) loadable by `StableDiffusionPipeline.from_pretrained`."""
    from diffusers import StableDiffusionPipeline

    return _save_pipeline(StableDiffusionPipeline, build_tiny_components(), tmp_path_factory.mktemp("tiny-sd"))


@pytest.fixture(scope="session")
def tiny_inpaint_model_dir(tmp_path_factory) -> Path:
    """The same layout with a 9-channel inpainting UNet (latents + mask + masked-image latents)."""
    from diffusers import StableDiffusionInpaintPipeline

    return _save_pipeline(
        StableDiffusionInpaintPipeline, build_tiny_components(in_channels=9), tmp_path_factory.mktemp("tiny-sd-inpaint")
    )


@pytest.fixture(scope="session")
def tiny_bgm_model_dir(tmp_path_factory) -> Path:
    """A BGM-shaped diffusers folder (native size 64 x 256, the `mini` spectrogram preset)."""
    from diffusers import StableDiffusionPipeline

    return _save_pipeline(StableDiffusionPipeline, build_tiny_bgm_components(), tmp_path_factory.mktemp("tiny-bgm"))


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir):
    """The tiny model loaded through charforge's own loader, fp32 on CPU (shared: hooks must restore what they change)."""
    from charforge.engine import load_model

    return load_model(tiny_model_dir, device="cpu", dtype=torch.float32)


@pytest.fixture(scope="session")
def tiny_inpaint_model(tiny_inpaint_model_dir):
    from charforge.engine import load_model

    return load_model(tiny_inpaint_model_dir, device="cpu", dtype=torch.float32)


@pytest.fixture(scope="session")
def tiny_sdxl_dir(tmp_path_factory) -> Path:
    """A tiny random SDXL as a diffusers folder (two text encoders; tests/helpers/sdxl.py)."""
    from helpers.sdxl import save_tiny_sdxl

    return save_tiny_sdxl(tmp_path_factory.mktemp("tiny-sdxl"))


@pytest.fixture(scope="session")
def tiny_sdxl_inpaint_dir(tmp_path_factory) -> Path:
    """The same with a 9-channel inpainting UNet."""
    from helpers.sdxl import save_tiny_sdxl

    return save_tiny_sdxl(tmp_path_factory.mktemp("tiny-sdxl-inpaint"), in_channels=9)


@pytest.fixture(scope="session")
def tiny_sdxl(tiny_sdxl_dir):
    """The tiny SDXL through charforge's own loader, fp32 on CPU (shared: hooks must restore what they change)."""
    from charforge.engine import load_model

    return load_model(tiny_sdxl_dir, device="cpu", dtype=torch.float32)


@pytest.fixture(scope="session")
def tiny_sdxl_inpaint(tiny_sdxl_inpaint_dir):
    from charforge.engine import load_model

    return load_model(tiny_sdxl_inpaint_dir, device="cpu", dtype=torch.float32)


@pytest.fixture(scope="session")
def mini_model():
    """The shipped portrait mini model (trained VAE and UNet), for properties a random VAE cannot show.

    Skips while the model has not been trained into the package yet.
    """
    from charforge.engine import default_model_path, load_model

    path = default_model_path()
    if not (path / "model_index.json").is_file():
        pytest.skip(f"shipped mini model not present at {path}")
    return load_model(path, device="cpu", dtype=torch.float32)


@pytest.fixture
def cli(capsys, monkeypatch):
    """Run the real entry point in-process (its error handling included); returns (exit code, stdout, stderr)."""
    import sys

    from charforge.cli.main import main

    def run(*args: object) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["charforge", *map(str, args)])
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def forge(tmp_path):
    """An empty workspace in the test's temporary folder."""
    from charforge.forge import Forge

    with Forge.open(tmp_path / "ws") as f:
        yield f


@pytest.fixture(scope="session")
def _workspace_templates() -> dict[str, Path]:
    """forge_copy's templates by key: folders built this session (per xdist worker)."""
    return {}


@pytest.fixture
def forge_copy(tmp_path, tmp_path_factory, _workspace_templates):
    """`forge_copy(key, build)`: like `forge` (a workspace at tmp_path/ws), but a copy of a workspace that
    `build(forge)` filled once per session (per xdist worker) under the name `key`.

    Building a character's identity costs seconds on a shared CPU; copying its few hundred kilobytes does
    not. The builders are seeded and run on the same tiny model, so a copy holds what a fresh build would;
    tests change only their copy, never the template.
    """
    import shutil

    from charforge.forge import Forge

    opened: list[Forge] = []

    def open_copy(key: str, build) -> Forge:
        if key not in _workspace_templates:
            root = tmp_path_factory.mktemp(f"template-{key}") / "ws"
            with Forge.open(root) as template:
                build(template)
            _workspace_templates[key] = root
        shutil.copytree(_workspace_templates[key], tmp_path / "ws")
        opened.append(Forge.open(tmp_path / "ws"))
        return opened[-1]

    yield open_copy
    for f in opened:
        f.close()


# Fixtures that load a shipped model: a test that uses one renders with real weights and belongs to the
# slow tier (`-m "not slow"` skips it), whether it asks for the fixture directly or through a parameter.
SHIPPED_MODEL_FIXTURES = frozenset({"mini_model"})


def pytest_collection_modifyitems(config, items):
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        uses = set(getattr(item, "fixturenames", ())) | {v for v in params.values() if isinstance(v, str)}
        if uses & SHIPPED_MODEL_FIXTURES:
            item.add_marker(pytest.mark.slow)


from helpers.postgres_server import postgres_server, postgres_url  # noqa: E402, F401  (fixtures)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request):
    """The database of a test run on both backends: None (the workspace's SQLite file) or a fresh
    database on a throwaway PostgreSQL server (skipped, saying why, when the server cannot start)."""
    return None if request.param == "sqlite" else request.getfixturevalue("postgres_url")


@pytest.fixture
def any_forge(tmp_path, db_url):
    """An empty workspace whose database is SQLite or PostgreSQL (tests using it run on both)."""
    from charforge.forge import Forge

    with Forge.open(tmp_path / "ws", db_url=db_url) as f:
        yield f
