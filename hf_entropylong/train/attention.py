"""The attention kernel a training run names, checked before the model loads.

A recipe names its attention in two places when it runs DeepSpeed-Ulysses sequence parallelism: the model's
`attn_implementation` and Accelerate's `parallelism_config_sp_attn_implementation`. DeepSpeed compares the two
names after the model has loaded and refuses the run when they differ, and transformers can change the first one
on its own: with `flash_attention_2` asked for and flash-attn not installed, it loads the Hub kernel
`kernels-community/flash-attn2` (through the `kernels` package, a dependency of transformers) and records that
name instead. An 8B model would be downloaded and loaded before the run stops.

[`require_attention`] settles both before any weights are read:

1. The run's parallelism is what the Trainer will build: `parallelism_config` of the training arguments, else the
   one `accelerate launch` describes in the environment ([`planned_parallelism`]).
2. Under Ulysses, the two names must be equal and in [`SEQUENCE_PARALLEL_ATTENTION`] (`check_sp_attention`).
3. The named kernel must be loadable here: flash-attn's packages for `flash_attention_2/3` (without them, under
   Ulysses, the silent switch above is refused), and for a Hub kernel (`org/name`) a build for this machine, found
   by `kernels.has_kernel` on the Hub, in the Hub cache (`HF_HUB_OFFLINE=1`) or in a local folder named by
   `LOCAL_KERNELS` — the same resolution transformers runs when it loads the model.

Each refusal is one line naming the setting and what to do.
"""

from __future__ import annotations

import importlib.util
import os

from .spans import check_sp_attention

# flash-attn's packages, and the Hub kernel transformers loads in their place when they are missing.
FLASH_ATTENTION_PACKAGES = {
    "flash_attention_2": ("flash_attn", "flash-attn", "kernels-community/flash-attn2"),
    "flash_attention_3": (
        "flash_attn_interface",
        "flash-attn 3 (hopper/)",
        "kernels-community/vllm-flash-attn3",
    ),
}


def planned_parallelism(training_args):
    """The `ParallelismConfig` the Trainer's accelerator will use: the arguments' own, else `accelerate launch`'s."""
    config = getattr(training_args, "parallelism_config", None)
    if config is None and os.environ.get("ACCELERATE_USE_PARALLELISM_CONFIG", "false").lower() == "true":
        from accelerate import ParallelismConfig

        config = ParallelismConfig()
    return config


def require_hub_kernel(repo_id: str) -> None:
    """Refuse a Hub attention kernel (`org/name`) with no build for this machine, before anything loads it."""
    from transformers.integrations.hub_kernels import get_attn_kernel_version
    from transformers.utils import is_kernels_available

    if not is_kernels_available():
        raise ImportError(
            f"attn_implementation={repo_id!r} is a Hub kernel: install `kernels` (pip install kernels)."
        )
    from kernels import has_kernel

    where = "the Hub cache (HF_HUB_OFFLINE=1)" if os.environ.get("HF_HUB_OFFLINE") else "the Hub"
    try:
        found = has_kernel(repo_id, version=get_attn_kernel_version(repo_id))
    except Exception as error:  # no network, no cache entry, a refused repository
        reason = " ".join(str(error).split())[:200]
        raise ValueError(
            f"attn_implementation={repo_id!r}: the kernel could not be resolved from {where} ({reason}); download it "
            "where the Hub is reachable (it is cached in HF_HOME), or point LOCAL_KERNELS at a local build."
        ) from error
    if not found:
        raise ValueError(
            f"attn_implementation={repo_id!r}: {where} has no build of this kernel for this machine (torch and "
            "backend as installed here); choose another attention or install a torch the kernel is built for."
        )


def require_attention(attn_implementation: str | None, parallelism_config=None) -> None:
    """Refuse, in one line and before the model loads, an attention this run could not use as named.

    Args:
        attn_implementation (`str` or `None`): the model's `attn_implementation`.
        parallelism_config (`accelerate.ParallelismConfig`, *optional*): the run's ([`planned_parallelism`]).

    Raises:
        `ValueError` or `ImportError`: naming the setting and what to do.
    """
    ulysses = (
        parallelism_config is not None
        and parallelism_config.sp_size > 1
        and parallelism_config.sp_backend == "deepspeed"
    )
    if ulysses:
        check_sp_attention(parallelism_config, attn_implementation)
    if attn_implementation in FLASH_ATTENTION_PACKAGES:
        module, package, fallback = FLASH_ATTENTION_PACKAGES[attn_implementation]
        if ulysses and importlib.util.find_spec(module) is None:
            raise ValueError(
                f"attn_implementation={attn_implementation!r} under DeepSpeed-Ulysses: {package} is not installed, "
                f"so transformers would load {fallback!r} instead and DeepSpeed would refuse the changed name after "
                f"the model loads; name {fallback!r} in the recipe and in parallelism_config_sp_attn_implementation, "
                f"or install {package}."
            )
    elif attn_implementation is not None and "/" in attn_implementation:
        require_hub_kernel(attn_implementation)
