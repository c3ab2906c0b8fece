"""The LoRA variant of CPT, tiny: only the adapter (and saved modules) train, the adapter saves and reloads."""

import json

import pytest
import torch
from peft import AutoPeftModelForCausalLM
from safetensors.torch import load_file

from hf_entropylong.train import cpt
from hf_entropylong.train.run import build_trainer, train_and_save

from .conftest import REPO


@pytest.mark.slow
def test_tiny_lora_cpt(tiny_cpt_dir, packed_dir, tmp_path):
    args = [
        "--config", str(REPO / "recipes/tiny/cpt_lora.yaml"),
        "--model_name_or_path", str(tiny_cpt_dir),
        "--dataset_name", str(packed_dir),
        "--output_dir", str(tmp_path),
        "--max_steps", "3", "--save_steps", "3", "--logging_steps", "1",
        "--activation_checkpointing", "false",
    ]  # fmt: skip
    trainer = build_trainer("cpt", args, cpt.load_packed_data)
    trainable = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or "norm" in n for n in trainable)
    assert any("q_proj.lora_A" in n for n in trainable) and any("down_proj.lora_B" in n for n in trainable)
    train_and_save(trainer)
    adapter = json.loads((tmp_path / "adapter_config.json").read_text())
    assert adapter["r"] == 8 and "q_proj" in adapter["target_modules"]
    assert not (tmp_path / "model.safetensors").exists()  # the adapter only
    weights = load_file(tmp_path / "adapter_model.safetensors")
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in weights.items())  # lora_B starts at zero
    model = AutoPeftModelForCausalLM.from_pretrained(tmp_path)
    assert torch.isfinite(model(input_ids=torch.arange(1, 9)[None]).logits).all()
    assert "LoRA r=8" in (tmp_path / "README.md").read_text()
