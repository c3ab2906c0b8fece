"""Tiny continued pretraining end to end on CPU: loss falls, checkpoints save, the run resumes and reloads."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from hf_entropylong.cli import main as cli_main
from hf_entropylong.train import cpt

from .conftest import REPO, TINY_STEPS, free_port, tiny_cpt_args


def losses(output_dir):
    state = json.loads((output_dir / "trainer_state.json").read_text())
    return [entry["loss"] for entry in state["log_history"] if "loss" in entry]


def test_tiny_cpt_trains_and_saves(tiny_cpt_dir):
    history = losses(tiny_cpt_dir)
    assert len(history) == TINY_STEPS
    assert sum(history[-3:]) / 3 < sum(history[:3]) / 3 - 0.2
    assert (tiny_cpt_dir / f"checkpoint-{TINY_STEPS // 2}" / "optimizer.pt").exists()
    run = json.loads((tiny_cpt_dir / "entropylong_training.json").read_text())
    assert run["stage"] == "cpt" and run["steps"] == TINY_STEPS and run["max_seq_length"] == 256
    assert run["tokens_seen"] == TINY_STEPS * 256
    assert run["overrides"]["rope_theta"] == {"old": 100000.0, "new": 1000000.0}
    state = json.loads((tiny_cpt_dir / "trainer_state.json").read_text())
    logs = [e for e in state["log_history"] if "loss" in e]
    assert [e["num_input_tokens_seen"] for e in logs] == [256 * step for step in range(1, TINY_STEPS + 1)]
    assert all(e["train_tokens_per_second"] > 0 for e in logs)
    assert (
        state["num_input_tokens_seen"] == TINY_STEPS * 256
    )  # in every checkpoint, so a resume keeps counting
    card = (tiny_cpt_dir / "README.md").read_text()
    assert "continued pretraining" in card and "| `rope_theta` | 100000.0 | 1000000.0 |" in card


def test_tiny_cpt_reloads_with_overrides(tiny_cpt_dir, packed_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_cpt_dir)
    assert model.config.rope_parameters["rope_theta"] == 1_000_000.0
    assert model.config.hidden_size == 64 and model.config.num_hidden_layers == 2
    ids = torch.arange(1, 65)[None]
    assert torch.isfinite(model(input_ids=ids).logits).all()


@pytest.mark.slow
def test_tiny_cpt_resumes_to_the_same_weights(tiny_cpt_dir, packed_dir, tmp_path):
    """Resuming from the half-way checkpoint (through the CLI) ends on the uninterrupted run's weights."""
    checkpoint = tiny_cpt_dir / f"checkpoint-{TINY_STEPS // 2}"
    cli_main(
        ["train", "cpt", *tiny_cpt_args(packed_dir, tmp_path, "--resume_from_checkpoint", str(checkpoint))]
    )
    resumed = json.loads((tmp_path / "trainer_state.json").read_text())
    assert resumed["global_step"] == TINY_STEPS
    run = json.loads((tmp_path / "entropylong_training.json").read_text())
    assert run["tokens_seen"] == TINY_STEPS * 256  # the whole run's tokens, not only the resumed half's
    original = json.loads((tiny_cpt_dir / "trainer_state.json").read_text())
    after = {
        e["step"]: e["loss"] for e in original["log_history"] if "loss" in e and e["step"] > TINY_STEPS // 2
    }
    again = {
        e["step"]: e["loss"] for e in resumed["log_history"] if "loss" in e and e["step"] > TINY_STEPS // 2
    }
    assert again.keys() == after.keys() and all(abs(again[k] - after[k]) < 1e-4 for k in after)
    expected, got = load_file(tiny_cpt_dir / "model.safetensors"), load_file(tmp_path / "model.safetensors")
    for name, tensor in expected.items():
        torch.testing.assert_close(got[name], tensor, atol=1e-5, rtol=1e-4)


def test_cpt_rejects_a_dataset_without_spans(tmp_path):
    (tmp_path / "train.jsonl").write_text('{"input_ids": [1, 2, 3]}\n')
    with pytest.raises(ValueError, match="missing column"):
        cpt.main(
            [
                "--config",
                "recipes/tiny/cpt.yaml",
                "--dataset_name",
                str(tmp_path),
                "--output_dir",
                str(tmp_path),
            ]
        )


@pytest.mark.slow
def test_accelerate_launch_two_processes(packed_dir, tmp_path):
    """`accelerate launch --config_file fsdp2.yaml --num_processes 2 -m hf_entropylong.train.cpt` trains the tiny
    recipe on 2 CPU processes: the recipe's `use_cpu` makes Accelerate run them as DDP over gloo (FSDP sharding
    itself needs GPUs), each on its own rows."""
    accelerate = Path(sys.executable).parent / "accelerate"
    command = [
        str(accelerate), "launch", "--config_file", str(REPO / "recipes/accelerate_configs/fsdp2.yaml"),
        "--num_processes", "2", "--mixed_precision", "no", "--main_process_port", free_port(),
        "-m", "hf_entropylong.train.cpt", *tiny_cpt_args(packed_dir, tmp_path, "--max_steps", "2"),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    run = json.loads((tmp_path / "entropylong_training.json").read_text())
    assert run["steps"] == 2 and run["hyperparameters"]["global batch (sequences)"] == 2
    assert run["tokens_seen"] == 2 * 2 * 256  # both processes' rows are counted
    assert (tmp_path / "model.safetensors").exists() and (tmp_path / "README.md").exists()
