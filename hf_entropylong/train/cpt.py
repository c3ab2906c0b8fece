"""Continued pretraining on a packed EntropyLong dataset: `hf-entropylong train cpt --config RECIPE.yaml`.

Also `accelerate launch --config_file recipes/accelerate_configs/… -m hf_entropylong.train.cpt --config …`.

1. Load the model with its `config_overrides` applied (the paper: `rope_theta` 2e8, 131,072 positions) —
   or build it from its config for the tiny recipe — and optionally wrap it in a LoRA adapter (`use_peft`).
2. Load the packed dataset (`dataset_name`: a built folder or a Hub repo; config `default`), keep
   `input_ids`, `seq_lengths`, `num_padding_tokens`, and check every row against the schema.
3. Train with [`EntropyLongTrainer`] (TRL `SFTTrainer`, dataset preparation skipped: the rows are already
   packed) and [`PackedCollator`]: every unit is its own attention span (flash-attn varlen, or the
   block-diagonal mask for sdpa/eager/flex), the loss never crosses a unit boundary, the padding tail carries no
   loss. The LM head and cross-entropy run fused in chunks, so 128K-token rows never build full fp32 logits.
4. Save the model, tokenizer, `entropylong_training.json` and the model card; push with `push_to_hub`.

`resume_from_checkpoint: true` (or a checkpoint folder) resumes optimizer, scheduler, RNG and data order.
"""

from __future__ import annotations

from datasets import load_dataset
from trl import get_peft_config

from .config import load_model_and_tokenizer
from .spans import PACKED_COLUMNS, PackedCollator, validate_packed_dataset
from .trainer import EntropyLongTrainer, parse_args, train_and_save


def load_packed_dataset(name: str, config: str | None, split: str, max_rows: int | None = None):
    """The `split` of a packed dataset (folder, file or Hub id), reduced to the training columns and validated.

    Returns `(dataset, max_seq_length)`.
    """
    if not name:
        raise ValueError(
            "dataset_name is required: a built dataset folder (e.g. outputs/demo) or a Hub repo."
        )
    dataset = load_dataset(name, name=config, split=split)
    if max_rows is not None:
        dataset = dataset.select(range(min(max_rows, len(dataset))))
    max_seq_length = validate_packed_dataset(dataset, source=f"{name} [{split}]")
    dataset = dataset.select_columns(list(PACKED_COLUMNS))
    return dataset, max_seq_length


def build_trainer(argv: list[str] | None = None) -> EntropyLongTrainer:
    """Parse `argv` (`--config RECIPE.yaml` and flag overrides) and return the ready trainer, before training."""
    script_args, training_args, model_args, long_args = parse_args(argv, prog="hf-entropylong train cpt")
    dataset, max_seq_length = load_packed_dataset(
        script_args.dataset_name,
        script_args.dataset_config,
        script_args.dataset_train_split,
        long_args.max_train_samples,
    )
    training_args.dataset_kwargs = {**(training_args.dataset_kwargs or {}), "skip_prepare_dataset": True}
    training_args.remove_unused_columns = False  # the collator needs seq_lengths and num_padding_tokens
    training_args.padding_free = False  # the custom collator below is padding-free itself
    training_args.max_length = max_seq_length
    model, tokenizer, overrides = load_model_and_tokenizer(model_args, long_args, training_args)
    if model.config.get_text_config().max_position_embeddings < max_seq_length:
        raise ValueError(
            f"{script_args.dataset_name}: rows of {max_seq_length} tokens exceed the model's "
            f"max_position_embeddings ({model.config.max_position_embeddings}); set config_overrides "
            "{'max_position_embeddings': …} (and rope_theta) for long-context training."
        )
    return EntropyLongTrainer(
        model=model,
        args=training_args,
        data_collator=PackedCollator(pad_token_id=tokenizer.pad_token_id),
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=get_peft_config(model_args),
        run_info={
            "stage": "cpt",
            "base_model": model_args.model_name_or_path,
            "datasets": [script_args.dataset_name],
            "recipe": long_args.recipe,
            "hardware": long_args.hardware,
            "overrides": overrides,
            "max_seq_length": max_seq_length,
            "eval_results": long_args.eval_results,
            "rows": len(dataset),
        },
    )


def main(argv: list[str] | None = None) -> None:
    trainer = build_trainer(argv)
    train_and_save(trainer, trainer.args)


if __name__ == "__main__":
    main()
