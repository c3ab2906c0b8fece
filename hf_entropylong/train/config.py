"""Script arguments shared by `train cpt` and `train sft`, and loading their tokenizer and model (with overrides).

Long-context training changes the base model's config before the weights are loaded: the paper raises
Llama-3's `rope_theta` from 500,000 to 200,000,000 and its window to 131,072 tokens. `config_overrides` does this
for any key of the config; in transformers 5 the RoPE base lives in `config.rope_parameters`, and a
`rope_theta` override is written there. The applied overrides (old and new values) are returned, saved with the
model's config and written in the model card. `init_from_config` builds a randomly initialised model from the
(overridden) config instead of loading weights: this is how the tiny recipes get a tiny Llama on CPU.

`liger_kernels` replaces the model's RoPE, RMSNorm and SwiGLU by Liger's fused Triton kernels (CUDA only; on the
1B shape at 128K on an H100: +20% tokens/s, -20% peak memory). They are applied to the loaded model through
transformers' Liger integration, with Liger's cross-entropy kernels off: the loss stays TRL's fused chunked LM
head. TRL 1.16 deprecates its own `use_liger_kernel` in favour of the Hub's kernels (`use_kernels`), which are
downloaded at run time and built per torch/CUDA version; Liger is a pip package that works offline.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import torch

from ..models import load_tokenizer, resolve_model
from .packages import missing_package_message
from .varlen import VARLEN_ATTENTION, register_varlen_attention


@dataclass
class LongContextArguments:
    """Arguments of the EntropyLong training scripts beyond TRL's `ScriptArguments`, `SFTConfig`, `ModelConfig`."""

    config_overrides: dict[str, Any] | str | None = field(
        default=None,
        metadata={
            "help": "Values set on the model config before loading, e.g. {'rope_theta': 2e8, "
            "'max_position_embeddings': 131072} (a JSON string on the command line)."
        },
    )
    init_from_config: bool = field(
        default=False, metadata={"help": "Build the model with random weights from its (overridden) config."}
    )
    tokenizer_name_or_path: str | None = field(
        default=None, metadata={"help": "Tokenizer to use; defaults to model_name_or_path."}
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Train on the first N rows only (smoke tests)."}
    )
    eval_results: list[str] = field(
        default_factory=list,
        metadata={"help": "results.json files of `hf-entropylong eval` runs, shown in the model card."},
    )
    hardware: str | None = field(
        default=None,
        metadata={"help": "The hardware the recipe ran on, for the model card (e.g. '8x H100 80GB')."},
    )
    recipe: str | None = field(
        default=None, metadata={"help": "Recipe file the run used, for the model card; defaults to --config."}
    )
    liger_kernels: bool = field(
        default=False,
        metadata={"help": "Liger's fused RoPE, RMSNorm and SwiGLU kernels (CUDA; pip install liger-kernel)."},
    )

    def __post_init__(self):
        if isinstance(self.config_overrides, str):
            try:
                self.config_overrides = json.loads(self.config_overrides)
            except json.JSONDecodeError as error:
                raise ValueError(f"config_overrides: not a JSON object: {self.config_overrides!r}") from error
        if self.config_overrides is not None and not isinstance(self.config_overrides, dict):
            raise ValueError(f"config_overrides must be a mapping, got {self.config_overrides!r}.")


def apply_config_overrides(config, overrides: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Set `overrides` on `config` in place and return `{key: {"old": …, "new": …}}`.

    `rope_theta` (and any other key of `config.rope_parameters`) is written into `rope_parameters` when the
    config keeps its RoPE settings there (transformers 5). An unknown key raises a `ValueError` naming it.
    """
    applied = {}
    rope = getattr(config, "rope_parameters", None)
    for key, value in (overrides or {}).items():
        if isinstance(rope, dict) and (key in rope or key == "rope_theta"):
            applied[key] = {"old": rope.get(key), "new": value}
            rope[key] = value
        elif hasattr(config, key):
            applied[key] = {"old": getattr(config, key), "new": value}
            setattr(config, key, value)
        else:
            raise ValueError(
                f"config_overrides: {type(config).__name__} has no field {key!r} "
                f"(model_type {config.model_type!r})."
            )
    return applied


# Liger's layer kernels; its cross-entropy kernels stay off (TRL computes the loss with its fused LM head).
LIGER_LAYERS = {
    "rope": True,
    "rms_norm": True,
    "swiglu": True,
    "cross_entropy": False,
    "fused_linear_cross_entropy": False,
}


def apply_liger_kernels(model) -> None:
    """Replace `model`'s RoPE, RMSNorm and SwiGLU by Liger's Triton kernels, in place ([`LIGER_LAYERS`])."""
    from transformers.integrations.liger import apply_liger_kernel
    from transformers.utils import is_liger_kernel_available

    if not is_liger_kernel_available():
        raise ImportError(missing_package_message("liger-kernel", "liger_kernels: true", "model"))
    if not torch.cuda.is_available():
        raise ValueError(
            "liger_kernels: Liger's Triton kernels need a CUDA GPU; set liger_kernels: false on CPU."
        )
    apply_liger_kernel(model, LIGER_LAYERS)


def load_training_tokenizer(model_args, long_args: LongContextArguments, trust_remote_code: bool = False):
    """The tokenizer of the run (`tokenizer_name_or_path`, else the model's), its EOS token as padding if it has none."""
    tokenizer = load_tokenizer(
        long_args.tokenizer_name_or_path or model_args.model_name_or_path, trust_remote_code=trust_remote_code
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_training_model(model_args, long_args: LongContextArguments, trust_remote_code: bool = False):
    """Load (or build) the causal LM with `config_overrides` applied.

    Args:
        model_args (`trl.ModelConfig`): `model_name_or_path` (a Hub id, a path or an `embedded:` name),
            `model_revision`, `dtype`, `attn_implementation` (`entropylong_varlen` is registered first).
        long_args ([`LongContextArguments`]): `config_overrides`, `init_from_config` and `liger_kernels`.
        trust_remote_code (`bool`): passed to `from_pretrained`.

    Returns:
        `(model, applied_overrides)`, the overrides as returned by [`apply_config_overrides`].
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    path = resolve_model(model_args.model_name_or_path)
    config = AutoConfig.from_pretrained(
        path, revision=model_args.model_revision, trust_remote_code=trust_remote_code
    )
    applied = apply_config_overrides(config, long_args.config_overrides)
    if model_args.attn_implementation == VARLEN_ATTENTION:
        register_varlen_attention()
    dtype = model_args.dtype
    kwargs = {
        "dtype": getattr(torch, dtype) if dtype not in (None, "auto") else dtype,
        "attn_implementation": model_args.attn_implementation,
        "trust_remote_code": trust_remote_code,
    }
    if long_args.init_from_config:
        model = AutoModelForCausalLM.from_config(config, **kwargs)
    else:
        model = AutoModelForCausalLM.from_pretrained(
            path, config=config, revision=model_args.model_revision, **kwargs
        )
    if long_args.liger_kernels:
        apply_liger_kernels(model)
    return model, applied
