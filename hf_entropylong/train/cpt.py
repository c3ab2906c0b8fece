"""Continued pretraining on a packed EntropyLong dataset: `hf-entropylong train cpt --config RECIPE.yaml`.

Also `accelerate launch --config_file recipes/accelerate_configs/… -m hf_entropylong.train.cpt --config …`.

1. Load the packed dataset (`dataset_name`: a built folder, a file or a Hub repo; config `default`), check every
   row against the schema, keep `input_ids`, `seq_lengths`, `num_padding_tokens`, and set `max_length` to the
   rows' length (a `max_length` set in the recipe or on the command line must equal it: rows are not re-packed).
2. Load the model with its `config_overrides` applied (the paper: `rope_theta` 2e8, 131,072 positions) —
   or build it from its config for the tiny recipe — and optionally wrap it in a LoRA adapter (`use_peft`).
3. Train with [`EntropyLongTrainer`] (TRL `SFTTrainer`, dataset preparation skipped: the rows are already
   packed) and [`PackedCollator`]: every unit is its own attention span (flash-attn varlen, or the
   block-diagonal mask for sdpa/eager/flex), the loss never crosses a unit boundary, the padding tail carries no
   loss. The LM head and cross-entropy run fused in chunks, so 128K-token rows never build full fp32 logits.
4. Save the model, tokenizer, `entropylong_training.json` and the model card; push with `push_to_hub`.

Steps 2-4 are shared with `train sft` ([`hf_entropylong.train.run`]). `resume_from_checkpoint: true` (or a
checkpoint folder) resumes optimizer, scheduler, RNG and data order.
"""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase

from . import run
from .spans import PACKED_COLUMNS, PackedCollator, validate_packed_dataset


def load_packed_data(args: run.RunArguments, tokenizer: PreTrainedTokenizerBase) -> run.TrainingData:
    """The packed training rows, validated, with the collator that keeps their spans apart.

    Sets the training arguments that pre-packed rows need: TRL's dataset preparation skipped, the collator's
    columns kept, `max_length` = the rows' length. A `max_length` the run asked for must equal it.
    """
    dataset = run.load_train_split(args)
    script, training = args.script, args.training
    source = f"{script.dataset_name} [{script.dataset_train_split}]"
    row_length = validate_packed_dataset(dataset, source=source)
    if "max_length" in args.given and training.max_length != row_length:
        raise ValueError(
            f"max_length={training.max_length}, but {source} is packed into rows of {row_length} tokens. CPT trains "
            "on the rows as built: drop max_length, or build the dataset with max_seq_length "
            f"{training.max_length}."
        )
    training.max_length = row_length
    training.dataset_kwargs = {**(training.dataset_kwargs or {}), "skip_prepare_dataset": True}
    training.remove_unused_columns = False  # the collator needs seq_lengths and num_padding_tokens
    training.padding_free = False  # PackedCollator is padding-free itself
    return run.TrainingData(
        dataset=dataset.select_columns(list(PACKED_COLUMNS)),
        counts={"rows": len(dataset)},
        data_collator=PackedCollator(
            pad_token_id=tokenizer.pad_token_id, pad_to_multiple_of=training.pad_to_multiple_of
        ),
    )


def main(argv: list[str] | None = None) -> None:
    """`hf-entropylong train cpt`: build the trainer from `argv` (`--config RECIPE.yaml`, flags) and train."""
    run.train_and_save(run.build_trainer("cpt", argv, load_packed_data))


if __name__ == "__main__":
    from hf_entropylong import cli

    cli.run(main)
