"""SFT after continued pretraining: `hf-entropylong train sft --config RECIPE.yaml`.

Also `accelerate launch --config_file recipes/accelerate_configs/… -m hf_entropylong.train.sft --config …`.

The paper fine-tunes on UltraChat packed to 128K tokens. This is TRL's own conversational SFT path, configured
for long context:

- `messages` conversations are rendered with a chat template that marks assistant turns with
  `{% generation %}` (`chat_template_path`; the recipes ship one), so `assistant_only_loss` puts the loss on
  assistant tokens only (end-of-turn token included);
- conversations are packed best-fit-decreasing into rows of `max_length` tokens (`packing_strategy: bfd`), each
  conversation its own attention span through per-conversation `position_ids` (flash-attn varlen, or the
  block-diagonal mask for sdpa/eager/flex), and the first token of each conversation carries no loss;
- the rest ([`EntropyLongTrainer`]: span-safety guard for sequence parallelism, fused chunked cross-entropy,
  tokens/s, resume, model card) is shared with `train cpt`.
"""

from __future__ import annotations

from pathlib import Path

from datasets import load_dataset
from trl import get_peft_config

from .config import load_model_and_tokenizer
from .trainer import EntropyLongTrainer, parse_args, train_and_save

FILE_TYPES = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}


def load_conversations(name: str, config: str | None, split: str, max_rows: int | None = None):
    """The `messages` column of a conversational dataset (Hub id, folder, or .jsonl/.json/.parquet file)."""
    if not name:
        raise ValueError("dataset_name is required, e.g. HuggingFaceH4/ultrachat_200k (split train_sft).")
    suffix = Path(name).suffix
    if suffix in FILE_TYPES and Path(name).is_file():
        dataset = load_dataset(FILE_TYPES[suffix], data_files={split: name}, split=split)
    else:
        dataset = load_dataset(name, name=config, split=split)
    if "messages" not in dataset.column_names:
        raise ValueError(
            f"{name} [{split}]: no 'messages' column (found {dataset.column_names}); SFT expects conversations "
            "as lists of {'role', 'content'}."
        )
    if max_rows is not None:
        dataset = dataset.select(range(min(max_rows, len(dataset))))
    return dataset.select_columns(["messages"])


def build_trainer(argv: list[str] | None = None) -> EntropyLongTrainer:
    """Parse `argv` (`--config RECIPE.yaml` and flag overrides) and return the ready trainer, before training."""
    script_args, training_args, model_args, long_args = parse_args(argv, prog="hf-entropylong train sft")
    dataset = load_conversations(
        script_args.dataset_name,
        script_args.dataset_config,
        script_args.dataset_train_split,
        long_args.max_train_samples,
    )
    model, tokenizer, overrides = load_model_and_tokenizer(model_args, long_args, training_args)
    return EntropyLongTrainer(
        model=model,
        args=training_args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=get_peft_config(model_args),
        run_info={
            "stage": "sft",
            "base_model": model_args.model_name_or_path,
            "datasets": [script_args.dataset_name],
            "recipe": long_args.recipe,
            "hardware": long_args.hardware,
            "overrides": overrides,
            "max_seq_length": training_args.max_length,
            "eval_results": long_args.eval_results,
            "conversations": len(dataset),
        },
    )


def main(argv: list[str] | None = None) -> None:
    trainer = build_trainer(argv)
    train_and_save(trainer, trainer.args)


if __name__ == "__main__":
    main()
