"""Every training recipe and accelerate config parses, and the paper's recipes hold the paper's numbers."""

import warnings
from pathlib import Path

import pytest
import torch
from accelerate.commands.config.config_args import load_config_from_file

from hf_entropylong.train.run import parse_args

REPO = Path(__file__).resolve().parents[2]
# The GPU recipes ask for bf16, which transformers refuses to even parse on a machine without a GPU.
CPU = [] if torch.cuda.is_available() else ["--use_cpu", "true"]
TRAIN_RECIPES = sorted((REPO / "recipes/tiny").glob("*.yaml")) + sorted(
    (REPO / "recipes/llama3-8b").rglob("*.yaml")
)
ACCELERATE_CONFIGS = sorted((REPO / "recipes/accelerate_configs").glob("*.yaml"))


@pytest.mark.parametrize("recipe", TRAIN_RECIPES, ids=lambda p: str(p.relative_to(REPO)))
def test_train_recipe_parses(recipe):
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # no deprecated field (e.g. gradient_checkpointing)
        script_args, training_args, model_args, long_args, _ = parse_args(
            ["--config", str(recipe), *CPU], prog="test"
        )
    assert model_args.model_name_or_path and script_args.dataset_name
    assert long_args.recipe == str(recipe)
    assert training_args.max_steps > 0 and training_args.activation_checkpointing
    if training_args.chat_template_path:
        assert (REPO / training_args.chat_template_path).is_file()
        assert training_args.assistant_only_loss and training_args.packing


def test_paper_cpt_recipe():
    recipe = REPO / "recipes/llama3-8b/cpt/config_128k.yaml"
    script_args, args, model_args, long_args, _ = parse_args(["--config", str(recipe), *CPU], prog="test")
    assert model_args.model_name_or_path == "meta-llama/Meta-Llama-3-8B"
    assert long_args.config_overrides == {"rope_theta": 200_000_000, "max_position_embeddings": 131072}
    assert model_args.attn_implementation == "flash_attention_2" and args.bf16 and long_args.liger_kernels
    assert (args.max_steps, args.learning_rate, args.warmup_steps) == (1000, 4e-5, 200)
    assert args.lr_scheduler_type.value == "cosine"
    assert (args.adam_beta1, args.adam_beta2, args.weight_decay, args.max_grad_norm) == (0.9, 0.95, 0.1, 1.0)
    # 8 GPUs in one Ulysses group = one data-parallel rank: 32 sequences x 131,072 tokens = 4.19M tokens per step
    assert args.per_device_train_batch_size * args.gradient_accumulation_steps * 131072 == 4_194_304


def test_paper_sft_recipe():
    recipe = REPO / "recipes/llama3-8b/sft/config_128k.yaml"
    script_args, args, model_args, long_args, _ = parse_args(["--config", str(recipe), *CPU], prog="test")
    assert script_args.dataset_name == "HuggingFaceH4/ultrachat_200k"
    assert (args.max_steps, args.learning_rate, args.warmup_steps) == (250, 2e-5, 0.05)
    assert args.lr_scheduler_type.value == "cosine_with_min_lr" and args.lr_scheduler_kwargs == {
        "min_lr_rate": 0.1
    }
    assert args.assistant_only_loss and args.packing_strategy == "bfd" and args.max_length == 131072
    assert args.per_device_train_batch_size * args.gradient_accumulation_steps * args.max_length == 2_097_152


def test_flags_override_recipe():
    recipe = REPO / "recipes/tiny/cpt.yaml"
    _, args, _, long_args, given = parse_args(
        ["--config", str(recipe), "--max_steps", "3", "--config_overrides", '{"rope_theta": 5.0}'],
        prog="test",
    )
    assert args.max_steps == 3 and long_args.config_overrides == {"rope_theta": 5.0}
    assert {
        "max_steps",
        "config_overrides",
        "learning_rate",
        "attn_implementation",
    } <= given  # flags and recipe
    assert "max_length" not in given


@pytest.mark.parametrize("path", ACCELERATE_CONFIGS, ids=lambda p: p.name)
def test_accelerate_config_parses(path):
    config = load_config_from_file(str(path))
    assert config.mixed_precision == "bf16" and config.num_processes >= 1
    if path.name == "ulysses_sp8.yaml":
        assert config.parallelism_config["parallelism_config_sp_size"] == config.num_processes
        assert config.parallelism_config["parallelism_config_sp_attn_implementation"] == "flash_attention_2"
