"""The sequence-parallel recipes' attention: named exactly, resolved as on a GPU, refused before the model loads.

The 8B recipes and `ulysses_sp8.yaml` name the Hub build of FlashAttention-2, `kernels-community/flash-attn2`.
It has CUDA builds only; here `kernels` loads `cpu_flash_attn2/` in its place (`LOCAL_KERNELS`, the library's own
override), so Accelerate's config check, `require_attention`, transformers' kernel loading and its flash-attn
wrapper all run as on a GPU. (`test_gpu_check.py` runs the same name inside `UlyssesSPAttentionHF`.)
"""

from pathlib import Path

import pytest
import torch
import yaml
from accelerate import ParallelismConfig
from accelerate.utils.dataclasses import DeepSpeedSequenceParallelConfig
from tiny_models import tiny_llama

from hf_entropylong.train import run
from hf_entropylong.train.attention import require_attention
from hf_entropylong.train.spans import SEQUENCE_PARALLEL_ATTENTION, PackedCollator, check_parallelism

from .conftest import REPO
from .test_spans import packed_rows

CPU_KERNEL = Path(__file__).with_name("cpu_flash_attn2")
RECIPES = REPO / "recipes/llama3-8b"


def ulysses(sp_attn: str) -> ParallelismConfig:
    handler = DeepSpeedSequenceParallelConfig(sp_attn_implementation=sp_attn)  # Accelerate's own name check
    return ParallelismConfig(sp_size=2, sp_backend="deepspeed", sp_handler=handler)


def recipe_attention() -> str:
    names = {
        yaml.safe_load((RECIPES / f"{stage}/config_128k.yaml").read_text())["attn_implementation"]
        for stage in ("cpt", "sft")
    }
    accelerate = yaml.safe_load((REPO / "recipes/accelerate_configs/ulysses_sp8.yaml").read_text())
    names.add(accelerate["parallelism_config"]["parallelism_config_sp_attn_implementation"])
    assert len(names) == 1, f"the recipes and ulysses_sp8.yaml must name one attention: {names}"
    return names.pop()


def test_recipe_attention_resolves_by_its_name_and_keeps_units_apart(monkeypatch):
    name = recipe_attention()
    monkeypatch.setenv("LOCAL_KERNELS", f"{name}={CPU_KERNEL}")
    parallelism = ulysses(name)
    require_attention(name, parallelism)
    model = tiny_llama(hidden_size=64, attn_implementation=name)
    assert model.config._attn_implementation == name  # what DeepSpeed compares with the sp setting
    check_parallelism(parallelism, model.config, model.config._attn_implementation, 68)
    batch = PackedCollator(pad_token_id=0)(packed_rows())
    inputs = {
        k: v
        for k, v in batch.items()
        if k not in ("labels", "cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k")
    }
    with torch.no_grad():
        logits = model(**inputs, use_cache=False).logits  # spans from position_ids, as under Ulysses
        model.set_attn_implementation("sdpa")
        reference = model(**inputs, use_cache=False).logits  # the block-diagonal mask (no cache: packed rows)
    assert torch.allclose(logits, reference, atol=1e-5)


def named(sp_attn: str) -> ParallelismConfig:
    """A Ulysses config naming `sp_attn`, set after Accelerate's check (which admits flash-attn's names only)."""
    handler = DeepSpeedSequenceParallelConfig(sp_attn_implementation="sdpa")
    handler.sp_attn_implementation = sp_attn
    return ParallelismConfig(sp_size=2, sp_backend="deepspeed", sp_handler=handler)


def test_exact_names_only():
    config = tiny_llama().config
    for name in SEQUENCE_PARALLEL_ATTENTION:
        check_parallelism(named(name), config, name)
    flash_named = "my-flash-attention"  # "flash" in a name is not enough
    with pytest.raises(ValueError, match=f"='{flash_named}': under DeepSpeed-Ulysses only varlen kernels"):
        check_parallelism(named(flash_named), config, flash_named)
    with pytest.raises(ValueError, match="differ"):  # DeepSpeed would refuse it after the model loads
        check_parallelism(ulysses("kernels-community/flash-attn2"), config, "flash_attention_2")


def cpt_argv(tmp_path, attention: str) -> list[str]:
    return [
        "--config",
        str(REPO / "recipes/tiny/cpt.yaml"),
        "--attn_implementation",
        attention,
        "--output_dir",
        str(tmp_path),
    ]


@pytest.fixture
def nothing_loads(monkeypatch):
    """Fail the test if the run gets as far as loading its tokenizer or model."""

    def loaded(*args, **kwargs):
        raise AssertionError("loaded before the attention was checked")

    monkeypatch.setattr(run, "load_training_tokenizer", loaded)
    monkeypatch.setattr(run, "load_training_model", loaded)


def test_a_kernel_with_no_build_is_refused_before_the_model_loads(tmp_path, monkeypatch, nothing_loads):
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("LOCAL_KERNELS", f"kernels-community/flash-attn2={tmp_path / 'empty'}")
    with pytest.raises(
        ValueError, match=r"^attn_implementation='kernels-community/flash-attn2': "
    ) as refused:
        run.build_trainer("cpt", cpt_argv(tmp_path, "kernels-community/flash-attn2"), None)
    assert "\n" not in str(refused.value)


def test_flash_attention_2_missing_under_ulysses_is_refused_before_the_model_loads(
    tmp_path, monkeypatch, nothing_loads
):
    pytest.importorskip("deepspeed")
    if __import__("importlib").util.find_spec("flash_attn"):
        pytest.skip("flash-attn is installed: transformers keeps the name")
    monkeypatch.setenv(
        "ACCELERATE_USE_PARALLELISM_CONFIG", "true"
    )  # what `accelerate launch` sets from the config
    monkeypatch.setenv("PARALLELISM_CONFIG_SP_SIZE", "2")
    monkeypatch.setenv("PARALLELISM_CONFIG_SP_BACKEND", "deepspeed")
    monkeypatch.setenv("PARALLELISM_CONFIG_SP_ATTN_IMPLEMENTATION", "flash_attention_2")
    with pytest.raises(ValueError, match="would load 'kernels-community/flash-attn2' instead") as refused:
        run.build_trainer("cpt", cpt_argv(tmp_path, "flash_attention_2"), None)
    assert "\n" not in str(refused.value)
