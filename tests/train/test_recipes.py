"""Every training recipe and accelerate config parses, the paper's recipes hold the paper's numbers, and every
recipe trains a step on CPU with its own settings (report_to, optimizer, checkpointing, precision), the model
swapped for a tiny one of the same architecture class and the data for small local files."""

import importlib.util
import json
import warnings
from pathlib import Path

import pytest
import torch
import yaml
from accelerate.commands.config.config_args import load_config_from_file

from hf_entropylong.models import EMBEDDED_LM
from hf_entropylong.train.packages import extras_providing, run_packages
from hf_entropylong.train.run import build_trainer, parse_args

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
    ulysses = load_config_from_file(str(REPO / "recipes/accelerate_configs/ulysses_sp8.yaml"))
    sp_attention = ulysses.parallelism_config["parallelism_config_sp_attn_implementation"]
    assert model_args.attn_implementation == sp_attention and args.bf16 and long_args.liger_kernels
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
        assert (
            config.parallelism_config["parallelism_config_sp_attn_implementation"] in GPU_ATTENTION
            or "/" in (config.parallelism_config["parallelism_config_sp_attn_implementation"])
        )


# SmolLM2-135M's Llama config shrunk: the class of Llama-3-8B (LlamaForCausalLM) with random weights
TINY_SHAPE = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
}
PAPER_RECIPES = sorted((REPO / "recipes/llama3-8b").rglob("*.yaml"))
TINY_SFT_LENGTH = yaml.safe_load((REPO / "recipes/tiny/sft.yaml").read_text())["max_length"]
GPU_EXTRA = "gpu"  # what README and the recipes' READMEs tell GPU users to install
GPU_ATTENTION = ("flash_attention_2", "flash_attention_3")  # kernels that need CUDA; Hub kernels too


def stage(recipe: Path) -> str:
    return "sft" if "/sft/" in str(recipe) or recipe.stem == "sft" else "cpt"


def build(recipe: Path, args: list[str]):
    from hf_entropylong.train import cpt, sft

    return build_trainer(
        stage(recipe), args, {"cpt": cpt.load_packed_data, "sft": sft.load_conversations}[stage(recipe)]
    )


def swapped_args(recipe: Path, packed_dir: Path, output_dir: Path) -> list[str]:
    """The recipe with its model swapped for a tiny one, its data for local files, and one optimizer step."""
    settings = yaml.safe_load(recipe.read_text())
    overrides = {**(settings.get("config_overrides") or {}), **TINY_SHAPE}
    if settings.get("max_length"):  # an SFT model that already has its long window
        overrides["max_position_embeddings"] = max(
            settings["max_length"], overrides.get("max_position_embeddings", 0)
        )
    sft = stage(recipe) == "sft"
    args = [
        "--config", str(recipe), *CPU, "--output_dir", str(output_dir),
        "--model_name_or_path", EMBEDDED_LM, "--init_from_config", "true", "--config_overrides", json.dumps(overrides),
        "--dataset_name", str(REPO / "recipes/tiny/chat.jsonl") if sft else str(packed_dir), "--dataset_config", "",
        "--max_steps", "1", "--gradient_accumulation_steps", "1", "--save_steps", "1", "--push_to_hub", "false",
    ]  # fmt: skip
    if sft:  # the tiny tokenizer's end of turn for Llama-3's, rows as short as the tiny recipe's
        args += ["--eos_token", "<|im_end|>", "--max_length", str(TINY_SFT_LENGTH)]
    if (
        not torch.cuda.is_available()
    ):  # what needs an accelerator: CUDA kernels, offloading activations from one
        attention = settings.get("attn_implementation", "sdpa")
        if attention in GPU_ATTENTION or "/" in attention:
            args += ["--attn_implementation", "sdpa"]
        if settings.get("activation_offloading"):
            args += ["--activation_offloading", "false"]
    return args


@pytest.mark.parametrize("recipe", TRAIN_RECIPES, ids=lambda p: str(p.relative_to(REPO)))
def test_recipe_trains_a_step_with_its_own_settings(recipe, packed_dir, tmp_path):
    """The Trainer of each recipe, built and stepped on CPU: the recipe's report_to callbacks write their logs, its
    optimizer is the one named, its checkpointing is on and its checkpoint is written. A package the recipe needs
    and this machine lacks (Liger's Triton kernels here) is refused first, in one line naming the extra."""
    from transformers.integrations import INTEGRATION_TO_CALLBACK

    settings = yaml.safe_load(recipe.read_text())
    args = swapped_args(recipe, packed_dir, tmp_path)
    if settings.get("liger_kernels") and importlib.util.find_spec("liger_kernel") is None:
        with pytest.raises(ValueError) as refused:
            build(recipe, args)
        message = str(refused.value)
        assert "\n" not in message and "liger_kernels: true needs the liger-kernel package" in message
        assert message.startswith(str(recipe)) and f"hf_entropylong[{GPU_EXTRA}]" in message
        args += ["--liger_kernels", "false"]
    trainer = build(recipe, args)
    report_to = trainer.args.report_to
    assert report_to == ([] if settings.get("report_to", "none") == "none" else [settings["report_to"]])
    callbacks = {type(callback) for callback in trainer.callback_handler.callbacks}
    assert {INTEGRATION_TO_CALLBACK[name] for name in report_to} <= callbacks
    trainer.train()
    optimizer = trainer.optimizer.optimizer if hasattr(trainer.optimizer, "optimizer") else trainer.optimizer
    assert type(optimizer) is torch.optim.AdamW
    assert trainer.args.optim.value == settings.get("optim", trainer.args.optim.value)
    assert bool(optimizer.defaults["fused"]) == trainer.args.optim.value.endswith("_fused")
    assert trainer.model.is_activation_checkpointing == settings["activation_checkpointing"]
    assert (tmp_path / "checkpoint-1").is_dir() and trainer.state.global_step == 1
    if "tensorboard" in report_to:
        assert list(
            (tmp_path / "runs").rglob("events.out.tfevents.*")
        )  # TensorBoardCallback's default folder


@pytest.mark.parametrize("recipe", PAPER_RECIPES, ids=lambda p: str(p.relative_to(REPO)))
def test_paper_recipes_packages_come_with_the_gpu_extra(recipe):
    """Every package a paper-scale recipe imports beyond the core (its report_to integrations, Liger, DeepSpeed)
    is in the [gpu] extra that README tells GPU users to install: taking one out fails here, in one line."""
    settings = yaml.safe_load(recipe.read_text())
    report_to = [settings["report_to"]] if settings.get("report_to", "none") != "none" else []
    needed = run_packages(
        report_to, bool(settings.get("liger_kernels")), deepspeed="ulysses_sp8" in recipe.read_text()
    )
    assert needed
    for package, (setting, _) in needed.items():
        extras = extras_providing(package)
        assert GPU_EXTRA in extras, (
            f"{recipe}: {setting} needs {package}, which the [{GPU_EXTRA}] extra lacks ({extras})"
        )
