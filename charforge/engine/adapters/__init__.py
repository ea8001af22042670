"""A character's look as adapters of the shared model: textual-inversion tokens and peft LoRAs.

Training (`train_token`, `train_lora`) runs on private copies of the model's modules; files are read
and written in the layouts diffusers reads and writes; `wear`/`wearing` put a look on the shared
model through diffusers' loaders and take it off without a trace.
"""

from charforge.engine.adapters.activation import Look, look_key, wear, wearing, worn_key
from charforge.engine.adapters.lora import (
    LORA_FILE,
    LORA_LR,
    LORA_RANK,
    LORA_STEPS,
    LORA_TEXT_ENCODER,
    LORA_TIMESTEP_BIAS,
    read_lora,
    train_lora,
    write_lora,
)
from charforge.engine.adapters.pipeline import diffusers_pipeline
from charforge.engine.adapters.textual_inversion import (
    EMBEDDING_FILE,
    check_token,
    read_embedding,
    train_token,
    write_embedding,
)
from charforge.engine.adapters.training import FitResult, TrainingSet, training_set

__all__ = [
    "EMBEDDING_FILE",
    "LORA_FILE",
    "LORA_LR",
    "LORA_RANK",
    "LORA_STEPS",
    "LORA_TEXT_ENCODER",
    "LORA_TIMESTEP_BIAS",
    "FitResult",
    "Look",
    "TrainingSet",
    "check_token",
    "diffusers_pipeline",
    "look_key",
    "read_embedding",
    "read_lora",
    "train_lora",
    "train_token",
    "training_set",
    "wear",
    "wearing",
    "worn_key",
    "write_embedding",
    "write_lora",
]
