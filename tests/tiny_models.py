"""Tiny causal LMs built from a config, with fixed random weights, for fast exact tests."""

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def tiny_llama(**overrides) -> LlamaForCausalLM:
    """A 2-layer Llama (vocab 97, hidden 32) in eval mode; any config field can be overridden."""
    torch.manual_seed(0)
    settings = dict(
        vocab_size=97,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    return LlamaForCausalLM(LlamaConfig(**{**settings, **overrides})).eval()
