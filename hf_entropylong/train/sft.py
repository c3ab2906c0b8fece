"""SFT after continued pretraining: `hf-entropylong train sft --config RECIPE.yaml`.

Also `accelerate launch --config_file recipes/accelerate_configs/… -m hf_entropylong.train.sft --config …`.

The paper fine-tunes on UltraChat packed to 128K tokens. This is TRL's own conversational SFT path, configured
for long context:

- the `messages` column of `dataset_name` (a Hub id, a folder, or a jsonl/json/parquet/csv file) is rendered
  with a chat template that marks assistant turns with `{% generation %}` (`chat_template_path`; the recipes ship
  one), so `assistant_only_loss` puts the loss on assistant tokens only (end-of-turn token included);
- conversations are packed best-fit-decreasing into rows of `max_length` tokens (`packing_strategy: bfd`), each
  conversation its own attention span through per-conversation `position_ids` (flash-attn varlen, or the
  block-diagonal mask for sdpa/eager/flex), and the first token of each conversation carries no loss;
- the rest ([`EntropyLongTrainer`]: span-safety guard for sequence parallelism, fused chunked cross-entropy,
  token count, resume, model card; [`hf_entropylong.train.run`]: loading, saving) is shared with `train cpt`.
"""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase

from . import run


def load_conversations(args: run.RunArguments, tokenizer: PreTrainedTokenizerBase) -> run.TrainingData:
    """The `messages` column of a conversational dataset; TRL renders, tokenizes and packs it."""
    dataset = run.load_train_split(args)
    if "messages" not in dataset.column_names:
        raise ValueError(
            f"{args.script.dataset_name} [{args.script.dataset_train_split}]: no 'messages' column (found "
            f"{dataset.column_names}); SFT expects conversations as lists of {{'role', 'content'}}."
        )
    return run.TrainingData(
        dataset=dataset.select_columns(["messages"]), counts={"conversations": len(dataset)}
    )


def main(argv: list[str] | None = None) -> None:
    """`hf-entropylong train sft`: build the trainer from `argv` (`--config RECIPE.yaml`, flags) and train."""
    run.train_and_save(run.build_trainer("sft", argv, load_conversations))


if __name__ == "__main__":
    from hf_entropylong import cli

    cli.run(main)
