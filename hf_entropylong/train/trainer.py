"""`EntropyLongTrainer`: TRL's `SFTTrainer` with the guard, token count and model card that long-context runs need.

On top of `SFTTrainer` (which already computes the loss with a fused, chunked LM head — no [tokens, vocab]
logits in float32 — and supports PEFT, activation checkpointing and Accelerate's parallelism configs), it:

- refuses `hub_token`: the arguments are pickled into `training_args.bin` in every checkpoint and pushed with the
  model, so a token among them would be published; pushes authenticate with `HF_TOKEN` or `hf auth login`;
- refuses unsafe sequence-parallel settings for packed data ([`check_parallelism`]) once the accelerator is
  built, so a setting coming from an accelerate YAML is checked too, and under DeepSpeed-Ulysses collates batches
  that its data loader can shard ([`ShardableCollator`]);
- counts the tokens it trains on in the trainer state (`include_num_input_tokens_seen`: all tokens of every
  batch, padding included, unless set to `non_padding`), so every log has `num_input_tokens_seen` and
  `train_tokens_per_second`, and the count survives a resume from a checkpoint;
- writes `entropylong_training.json` and renders `model_card/template.md` into `README.md` instead of the
  generic card, at every checkpoint and on `push_to_hub`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trl import SFTConfig, SFTTrainer

from .modelcard import RUN_FILE, load_results, render_model_card
from .spans import ShardableCollator, check_parallelism


def _name(option) -> str:
    return str(getattr(option, "value", option))


def hyperparameters(
    args: SFTConfig, num_processes: int, sp_size: int, seq_length: int | None
) -> dict[str, Any]:
    """The hyperparameters shown in the model card, with the global batch in sequences and tokens."""
    sequences = args.per_device_train_batch_size * args.gradient_accumulation_steps * num_processes // sp_size
    table = {
        "learning rate": args.learning_rate,
        "schedule": _name(args.lr_scheduler_type),
        "schedule kwargs": args.lr_scheduler_kwargs or {},
        "warmup": f"{args.warmup_steps:.0%} of steps"
        if 0 < args.warmup_steps < 1
        else f"{args.warmup_steps:g} steps",
        "max steps": args.max_steps,
        "global batch (sequences)": sequences,
        "optimizer": f"{_name(args.optim)} (β1={args.adam_beta1}, β2={args.adam_beta2}, ε={args.adam_epsilon})",
        "weight decay": args.weight_decay,
        "gradient clipping": args.max_grad_norm,
        "precision": "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32",
        "activation checkpointing": args.activation_checkpointing,
        "sequence parallel size": sp_size,
        "seed": args.seed,
    }
    if seq_length:
        table["global batch (tokens)"] = f"{sequences * seq_length:,}"
    return table


class EntropyLongTrainer(SFTTrainer):
    """`SFTTrainer` plus the token and span-safety guards, the token count and the EntropyLong model card.

    Args:
        model (`transformers.PreTrainedModel`): the model to train.
        args (`trl.SFTConfig`): the training arguments; `include_num_input_tokens_seen` is turned on (`"all"`)
            when it is off.
        run_info (`dict`): card fields known before training (`stage`, `base_model`, `datasets`, `recipe`,
            `hardware`, `overrides`, `max_seq_length`, `eval_results`, row counts); steps, tokens, loss and
            hyperparameters are added by [`~EntropyLongTrainer.run_summary`].
        **kwargs: passed to [`trl.SFTTrainer`].
    """

    def __init__(self, model, args: SFTConfig, *, run_info: dict[str, Any], **kwargs):
        if args.hub_token:
            raise ValueError(
                "hub_token would be saved in plain text in training_args.bin (every checkpoint, and the pushed "
                "repo): set the HF_TOKEN environment variable or run `hf auth login` instead."
            )
        if args.include_num_input_tokens_seen == "no":
            args.include_num_input_tokens_seen = "all"
        super().__init__(model=model, args=args, **kwargs)
        self.run_info = run_info
        config = self.model.config
        seq_length = run_info.get("max_seq_length")
        check_parallelism(
            self.accelerator.parallelism_config,
            config.get_text_config(),
            getattr(config, "_attn_implementation", None),
            seq_length * self.args.per_device_train_batch_size if seq_length else None,
        )
        parallelism = self.accelerator.parallelism_config
        if parallelism is not None and parallelism.sp_backend == "deepspeed" and parallelism.sp_size > 1:
            self.data_collator = ShardableCollator(self.data_collator)

    def run_summary(self) -> dict[str, Any]:
        """`run_info` plus what the run has done so far: steps, tokens, last loss, hyperparameters."""
        parallelism = self.accelerator.parallelism_config
        sp_size = parallelism.sp_size if parallelism is not None else 1
        losses = [entry["loss"] for entry in self.state.log_history if "loss" in entry]
        peft_config = getattr(self.model, "peft_config", None)
        peft = None
        if peft_config:
            adapter = next(iter(peft_config.values()))
            peft = {
                "r": adapter.r,
                "lora_alpha": adapter.lora_alpha,
                "target_modules": sorted(adapter.target_modules or []),
            }
        return {
            **self.run_info,
            "output_dir": str(self.args.output_dir),
            "repo_id": self.args.hub_model_id,
            "model_name": self.args.hub_model_id or Path(self.args.output_dir).name,
            "attn_implementation": getattr(self.model.config, "_attn_implementation", None),
            "steps": self.state.global_step,
            "tokens_seen": self.state.num_input_tokens_seen,
            "final_loss": losses[-1] if losses else None,
            "peft": peft,
            "hyperparameters": hyperparameters(
                self.args, self.accelerator.num_processes, sp_size, self.run_info.get("max_seq_length")
            ),
        }

    def create_model_card(
        self, model_name: str | None = None, dataset_name: str | None = None, **kwargs
    ) -> None:
        """Write `entropylong_training.json` and the EntropyLong card into `output_dir` (main process only)."""
        if not self.is_world_process_zero():
            return
        output_dir = Path(self.args.output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        run = self.run_summary()
        (output_dir / RUN_FILE).write_text(json.dumps(run, indent=2, default=str))
        results = [load_results(p) for p in self.run_info.get("eval_results", [])]
        (output_dir / "README.md").write_text(render_model_card(run, results))
