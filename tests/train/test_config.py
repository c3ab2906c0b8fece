"""Config overrides: rope_theta lands in rope_parameters, other keys on the config, unknown keys are refused."""

import pytest
import torch
from tiny_models import tiny_llama
from transformers import LlamaConfig

from hf_entropylong.train.config import LongContextArguments, apply_config_overrides, apply_liger_kernels


def test_overrides_are_applied_and_recorded():
    config = LlamaConfig(
        max_position_embeddings=8192, rope_parameters={"rope_type": "default", "rope_theta": 500000.0}
    )
    applied = apply_config_overrides(config, {"rope_theta": 2e8, "max_position_embeddings": 131072})
    assert config.rope_parameters["rope_theta"] == 2e8 and config.max_position_embeddings == 131072
    assert applied == {
        "rope_theta": {"old": 500000.0, "new": 2e8},
        "max_position_embeddings": {"old": 8192, "new": 131072},
    }
    assert config.to_dict()["rope_parameters"]["rope_theta"] == 2e8  # saved with the model


def test_unknown_override_is_refused():
    with pytest.raises(ValueError, match="no field 'rope_thetta'"):
        apply_config_overrides(LlamaConfig(), {"rope_thetta": 1.0})


def test_overrides_from_the_command_line():
    assert LongContextArguments(config_overrides='{"rope_theta": 2e8}').config_overrides == {
        "rope_theta": 2e8
    }
    with pytest.raises(ValueError, match="not a JSON object"):
        LongContextArguments(config_overrides="rope_theta=2e8")


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU refusal")
def test_liger_kernels_are_refused_without_a_gpu():
    with pytest.raises((ImportError, ValueError), match="liger_kernels: .*(not installed|CUDA GPU)"):
        apply_liger_kernels(tiny_llama())
