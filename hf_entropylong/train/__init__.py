"""Training on EntropyLong data: continued pretraining (`cpt`) and SFT (`sft`) with TRL, and the model card.

`register_varlen_attention()` registers `entropylong_varlen` (torch's varlen kernel) with transformers; the
training scripts do it when a recipe names it. Importing the package registers nothing.

`hf-entropylong train cpt --config recipes/tiny/cpt.yaml` · `hf-entropylong train sft --config recipes/tiny/sft.yaml`
"""

from .config import LongContextArguments, apply_config_overrides, load_training_model, load_training_tokenizer
from .modelcard import load_results, render_model_card, write_model_card
from .run import RunArguments, TrainingData, build_trainer, parse_args, train_and_save
from .spans import PackedCollator, ShardableCollator, check_parallelism, validate_packed_dataset
from .trainer import EntropyLongTrainer
from .varlen import VARLEN_ATTENTION, register_varlen_attention

__all__ = [
    "VARLEN_ATTENTION",
    "EntropyLongTrainer",
    "LongContextArguments",
    "PackedCollator",
    "RunArguments",
    "ShardableCollator",
    "TrainingData",
    "apply_config_overrides",
    "build_trainer",
    "check_parallelism",
    "load_results",
    "load_training_model",
    "load_training_tokenizer",
    "parse_args",
    "register_varlen_attention",
    "render_model_card",
    "train_and_save",
    "validate_packed_dataset",
    "write_model_card",
]
