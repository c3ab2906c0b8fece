"""Training on EntropyLong data: continued pretraining (`cpt`) and SFT (`sft`) with TRL, and the model card.

`hf-entropylong train cpt --config recipes/tiny/cpt.yaml` · `hf-entropylong train sft --config recipes/tiny/sft.yaml`
"""

from .config import LongContextArguments, apply_config_overrides, load_model_and_tokenizer
from .modelcard import load_results, render_model_card, write_model_card
from .spans import PackedCollator, check_parallelism, validate_packed_dataset
from .trainer import EntropyLongTrainer

__all__ = [
    "EntropyLongTrainer",
    "LongContextArguments",
    "PackedCollator",
    "apply_config_overrides",
    "check_parallelism",
    "load_model_and_tokenizer",
    "load_results",
    "render_model_card",
    "validate_packed_dataset",
    "write_model_card",
]
