"""Tiny SFT on CPU: only assistant tokens carry loss, conversations are separate spans, the run trains and saves."""

import json
import re

import pytest
import torch
from transformers import AutoModelForCausalLM

from hf_entropylong.train import sft
from hf_entropylong.train.run import build_trainer

from .conftest import REPO

ASSISTANT = re.compile(r"<\|im_start\|>assistant\n(.*?<\|im_end\|>)", re.S)


def sft_args(model_dir, output_dir, *extra):
    return [
        "--config", str(REPO / "recipes/tiny/sft.yaml"),
        "--model_name_or_path", str(model_dir),
        "--dataset_name", str(REPO / "recipes/tiny/chat.jsonl"),
        "--chat_template_path", str(REPO / "recipes/tiny/chat_template.jinja"),
        "--output_dir", str(output_dir),
        "--max_length", "256",
        "--logging_steps", "1",
        *extra,
    ]  # fmt: skip


def test_only_assistant_tokens_carry_loss(tiny_cpt_dir, tmp_path, tokenizer):
    trainer = build_trainer("sft", sft_args(tiny_cpt_dir, tmp_path), sft.load_conversations)
    rows = [trainer.train_dataset[i] for i in range(3)]
    batch = trainer.data_collator(rows)
    assert "attention_mask" not in batch
    ids, labels, positions = batch["input_ids"][0], batch["labels"][0], batch["position_ids"][0]
    starts = (positions == 0).nonzero().flatten().tolist() + [len(ids)]
    assert len(starts) - 1 == sum(len(r["seq_lengths"]) for r in rows) > 3  # one span per conversation
    checked = 0
    for start, end in zip(starts[:-1], starts[1:], strict=True):
        text = tokenizer.decode(ids[start:end])
        assert text.startswith("<|im_start|>") and text.count("<|im_start|>user") >= 1
        trained = labels[start:end] != -100
        assert tokenizer.decode(ids[start:end][trained]) == "".join(ASSISTANT.findall(text))
        checked += 1
    assert checked == len(starts) - 1


@pytest.mark.slow
def test_tiny_sft_trains_saves_and_reloads(tiny_cpt_dir, tmp_path):
    sft.main(sft_args(tiny_cpt_dir, tmp_path, "--max_steps", "6", "--save_steps", "3"))
    state = json.loads((tmp_path / "trainer_state.json").read_text())
    history = [e["loss"] for e in state["log_history"] if "loss" in e]
    assert len(history) == 6 and sum(history[-2:]) / 2 < sum(history[:2]) / 2
    assert (tmp_path / "checkpoint-3").is_dir() and (tmp_path / "checkpoint-6").is_dir()
    model = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert model.config.rope_parameters["rope_theta"] == 1_000_000.0  # carried over from CPT
    assert torch.isfinite(model(input_ids=torch.arange(1, 9)[None]).logits).all()
    card = (tmp_path / "README.md").read_text()
    assert "**SFT**" in card and "recipes/tiny/chat.jsonl" in card
