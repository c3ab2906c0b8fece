"""One training run from the command line, the same for `train cpt` and `train sft` but for the data.

1. Parse `--config RECIPE.yaml` and flag overrides into TRL's `ScriptArguments`, `SFTConfig`, `ModelConfig`
   and [`LongContextArguments`].
2. Refuse an attention this machine cannot run as named (`attention.require_attention`: the kernel's build,
   and under sequence parallelism both names), then load the tokenizer and the stage's training data
   (`load_data`: packed rows for CPT, conversations for SFT), which may set the training arguments it needs —
   all before the model, so a bad setting or dataset fails fast. With
   flex_attention, batches are padded to whole blocks of `FLEX_BLOCK_SIZE` tokens (`pad_to_multiple_of`).
3. Seed every RNG with `seed` — a model built from its config (`init_from_config`) gets the same random weights
   on every run — then load the model with its `config_overrides` (wrapped in a LoRA adapter by the trainer
   when `use_peft`) and check that its context window holds `max_length` tokens.
4. Build [`EntropyLongTrainer`] with the run's facts for the model card (stage, base model, data, recipe,
   hardware, overrides, sequence length, row counts), train — resuming when `resume_from_checkpoint` is set —
   and save the weights, tokenizer, `entropylong_training.json` and the card, or push them with `push_to_hub`.

Datasets are read with [`hf_entropylong.sources.load_raw_source`]: a Hub id (`dataset_config` becomes
`org/name::config`), a local jsonl/json/parquet/csv/txt file, or a folder.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import yaml
from datasets import Dataset
from transformers import set_seed
from trl import ModelConfig, ScriptArguments, SFTConfig, TrlParser, get_peft_config

from ..models import context_window
from ..paths import installed_recipe
from ..sources import load_raw_source
from .attention import planned_parallelism, require_attention
from .config import LongContextArguments, load_training_model, load_training_tokenizer
from .packages import check_run_packages
from .spans import FLEX_BLOCK_SIZE
from .trainer import EntropyLongTrainer

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


class RunArguments(NamedTuple):
    """The parsed arguments of a training run, in the order the parser's dataclasses are given, and the names of
    the options that the recipe or a flag set (`given`), to tell a chosen value from a default one."""

    script: ScriptArguments
    training: SFTConfig
    model: ModelConfig
    long: LongContextArguments
    given: frozenset[str] = frozenset()


@dataclass
class TrainingData:
    """What a stage trains on.

    Args:
        dataset (`datasets.Dataset`): the training rows, reduced to the columns the trainer reads.
        counts (`dict[str, int]`): what the run summary records about them, e.g. `{"rows": 30}`.
        data_collator (*optional*): the collator; `None` lets `SFTTrainer` build its own from the arguments.
    """

    dataset: Dataset
    counts: dict[str, int] = field(default_factory=dict)
    data_collator: Callable[[list[dict[str, Any]]], dict[str, Any]] | None = None


def parse_args(argv: list[str] | None, prog: str) -> RunArguments:
    """Parse `--config recipe.yaml` and flags; `recipe` defaults to the `--config` file."""
    parser = TrlParser((ScriptArguments, SFTConfig, ModelConfig, LongContextArguments), prog=prog)
    argv = list(sys.argv[1:] if argv is None else argv)
    flags = {arg[2:].split("=", 1)[0] for arg in argv if arg.startswith("--")}
    recipe = (
        yaml.safe_load(Path(argv[argv.index("--config") + 1]).read_text()) if "--config" in argv else None
    )
    args = RunArguments(*parser.parse_args_and_config(argv), given=frozenset(flags | set(recipe or {})))
    if args.long.recipe is None and "--config" in argv:
        args.long.recipe = argv[argv.index("--config") + 1]
    args.script.dataset_name = installed_recipe(args.script.dataset_name)  # a recipe's own data and template
    args.training.chat_template_path = installed_recipe(args.training.chat_template_path)
    return args


def load_train_split(args: RunArguments) -> Dataset:
    """The `dataset_train_split` of `dataset_name`, with all its columns, cut to `max_train_samples` rows."""
    script = args.script
    if not script.dataset_name:
        raise ValueError(
            "dataset_name is required: a local file or folder (e.g. outputs/demo) or a Hub dataset id."
        )
    source = (
        f"{script.dataset_name}::{script.dataset_config}" if script.dataset_config else script.dataset_name
    )
    dataset = load_raw_source(source, script.dataset_train_split)
    max_rows = args.long.max_train_samples
    if max_rows is not None:
        dataset = dataset.select(range(min(max_rows, len(dataset))))
    return dataset


def check_context_window(model, max_length: int | None, dataset_name: str) -> None:
    """Refuse rows of `max_length` tokens that the model's context window cannot hold."""
    window = context_window(model)
    if max_length is not None and max_length > window:
        raise ValueError(
            f"{dataset_name}: rows of {max_length} tokens exceed the model's context window ({window}); set "
            "config_overrides {'max_position_embeddings': …} (and rope_theta) for long-context training."
        )


def build_trainer(
    stage: str,
    argv: list[str] | None,
    load_data: Callable[[RunArguments, PreTrainedTokenizerBase], TrainingData],
) -> EntropyLongTrainer:
    """Parse `argv` and return the trainer of a `stage` run, ready to train.

    Args:
        stage (`str`): `"cpt"` or `"sft"`, for the command's name and the model card.
        argv (`list[str]`, *optional*): `--config RECIPE.yaml` and flag overrides; `sys.argv[1:]` when `None`.
        load_data (`Callable`): `(args, tokenizer) -> TrainingData`, the stage's data; it may set training
            arguments (`max_length`, `dataset_kwargs`, …) before the model and the trainer are built.
    """
    args = parse_args(argv, prog=f"hf-entropylong train {stage}")
    if not args.model.model_name_or_path:
        raise ValueError(
            "model_name_or_path is required (a Hub id, a local path or embedded:SmolLM2-135M-Instruct)."
        )
    require_attention(args.model.attn_implementation, planned_parallelism(args.training))
    source = args.long.recipe or f"hf-entropylong train {stage}"
    check_run_packages(args.training.report_to, args.long.liger_kernels, source)
    if args.model.attn_implementation == "flex_attention" and args.training.pad_to_multiple_of is None:
        args.training.pad_to_multiple_of = FLEX_BLOCK_SIZE  # whole blocks for the compiled flex kernels
    trust_remote_code = args.training.trust_remote_code
    tokenizer = load_training_tokenizer(args.model, args.long, trust_remote_code)
    data = load_data(args, tokenizer)
    set_seed(args.training.seed)
    model, overrides = load_training_model(args.model, args.long, trust_remote_code)
    check_context_window(model, args.training.max_length, args.script.dataset_name)
    return EntropyLongTrainer(
        model=model,
        args=args.training,
        data_collator=data.data_collator,
        train_dataset=data.dataset,
        processing_class=tokenizer,
        peft_config=get_peft_config(args.model),
        run_info={
            "stage": stage,
            "base_model": args.model.model_name_or_path,
            "datasets": [args.script.dataset_name],
            "recipe": args.long.recipe,
            "hardware": args.long.hardware,
            "overrides": overrides,
            "max_seq_length": args.training.max_length,
            "eval_results": args.long.eval_results,
            **data.counts,
        },
    )


def train_and_save(trainer: EntropyLongTrainer) -> None:
    """Train (resuming when `resume_from_checkpoint` is set), save weights, tokenizer and card, push if asked."""
    args = trainer.args
    # "true" (YAML or flag) resumes from the newest checkpoint in output_dir, as Trainer does for True
    resume = args.resume_from_checkpoint
    if isinstance(resume, str) and resume.lower() in ("true", "false"):
        resume = resume.lower() == "true"
    result = trainer.train(resume_from_checkpoint=resume)
    trainer.log_metrics("train", result.metrics)
    trainer.save_metrics("train", result.metrics)
    trainer.save_state()
    if args.push_to_hub:
        trainer.push_to_hub()  # saves the model and writes the card first
    else:
        trainer.save_model(args.output_dir)
        trainer.create_model_card()
    if trainer.is_world_process_zero():
        summary = trainer.run_summary()
        print(
            f"{summary['stage']}: {summary['steps']} steps, {summary['tokens_seen']:,} tokens, final loss "
            f"{summary['final_loss']}, saved to {args.output_dir}"
        )
