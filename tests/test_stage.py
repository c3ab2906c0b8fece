"""Stage records: every setting belongs somewhere and reaches exactly the cache keys of the stages it changes."""

import dataclasses
import typing
from pathlib import Path

import pytest
import torch

from hf_entropylong.builder import runner as build_module
from hf_entropylong.builder.config import SETTINGS_GROUPS, BuildConfig
from hf_entropylong.builder.inputs import BuildInputs, input_identities, stage_keys
from hf_entropylong.methods import METHODS, stages_of
from hf_entropylong.methods.entropylong import STAGES
from hf_entropylong.settings import is_output_neutral
from hf_entropylong.stages import InputView

RECIPES = Path(__file__).resolve().parents[1] / "recipes" / "build"
INDEX_FIELDS = {"corpus", "corpus_split", "corpus_text_column", "corpus_id_column", "embedder",
                "embedder_max_seq_length", "index_factory", "document_prompt_name", "index_train_size", "seed"}  # fmt: skip
CHUNK_FIELDS = {"meta_chunk_chars", "meta_chunk_sentences"}
# Output-relevant fields that no stage owns: the first stage each must rerun (None: only the uncached packing).
SHARED_FIELDS = {
    **dict.fromkeys(["roots", "roots_split", "roots_text_column", "roots_id_column", "num_roots"], "entropy"),
    **dict.fromkeys(
        ["lm", "lm_dtype", "attn_implementation", "lm_max_length", "max_seq_length", "seed"], "entropy"
    ),
    **dict.fromkeys(INDEX_FIELDS - {"seed"}, "retrieval"),
    "min_row_fill": None,
}
BASE = BuildConfig(hub_repo_id="org/name")  # so that push_to_hub can be switched on


def _other_value(name: str):
    """A valid value of field `name` other than its value in BASE."""
    hint = typing.get_type_hints(BuildConfig)[name]
    value = getattr(BASE, name)
    options = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    if typing.get_origin(hint) is typing.Literal:
        return next(choice for choice in options if choice != value)
    if value is None:
        return {int: 3, float: 0.3, str: "other"}[options[0]]
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value / 2
    if isinstance(value, list):
        return [*value, "other"]
    return f"{value}-other"


def _keys(config: BuildConfig) -> dict[str, str]:
    return stage_keys(config, roots_identity="roots", corpus_identity="corpus")


OWNERS = {field.name: group for group in SETTINGS_GROUPS for field in dataclasses.fields(group)}


def test_every_field_has_help_and_one_settings_group():
    seen = set()
    for group in SETTINGS_GROUPS:
        names = {field.name for field in dataclasses.fields(group)}
        assert not names & seen, f"{group.__name__} repeats {names & seen}"
        seen |= names
        assert set(getattr(group, "output_neutral", ())) <= names, (
            f"{group.__name__} declares unknown neutral fields"
        )
        for field in dataclasses.fields(group):
            assert field.metadata.get("help"), f"{group.__name__}.{field.name} has no help text"
    assert seen == {field.name for field in dataclasses.fields(BuildConfig)}


FIELDS = [field.name for field in dataclasses.fields(BuildConfig) if field.name != "method"]


def _owner(name: str, stages) -> str | None:
    return next(
        (stage.name for stage in stages if name in {f.name for f in dataclasses.fields(stage.settings)}), None
    )


@pytest.mark.parametrize("name", FIELDS)
def test_a_changed_field_reruns_exactly_the_stages_it_reaches(name):
    """For every method, the stages whose cache keys a changed field changes (`stage_keys` on the declarations;
    test_invalidation.py checks the declarations against builds)."""
    for method in METHODS:
        _check_keys_of(name, method)


def _check_keys_of(name: str, method: str) -> None:
    base = dataclasses.replace(BASE, method=method)
    stages = stages_of(base.method)
    names = [stage.name for stage in stages]
    before, after = _keys(base), _keys(dataclasses.replace(base, **{name: _other_value(name)}))
    changed = {key for key in before if before[key] != after[key]}
    if is_output_neutral(OWNERS[name], name):
        assert not changed, f"{method}: output-neutral {name} changes the keys of {changed}"
        return
    assert any(_owner(name, stages_of(m)) for m in tuple(METHODS)) or (name in SHARED_FIELDS), (
        f"{name} belongs to no stage and is not declared neutral"
    )
    owner = _owner(name, stages)
    if owner:
        first = owner
    elif name in SHARED_FIELDS and method == "entropylong":
        first = SHARED_FIELDS[name]
    elif name in SHARED_FIELDS:  # a baseline reruns from the first of its stages that reads the field's input
        first = next((stage for stage in names if stage in changed), None)
    else:
        first = None  # a setting of another method's stage
    expected = set(names[names.index(first) :]) if first else set()
    if name in INDEX_FIELDS:
        expected |= {"index", "chunk_index"}
    if name in CHUNK_FIELDS or name in {"corpus", "corpus_split", "corpus_text_column", "corpus_id_column"}:
        expected |= {"chunks", "chunk_index"}  # the corpus's meta-chunks (NExtLong's index)
    assert changed == expected, method


ABLATIONS = {
    "alpha": ([1.5, 2.5], "entropy"),
    "window_words": ([8, 32], "entropy"),
    "epsilon": ([0.2, 0.6, 0.8], "verify"),
    "order": (["sequence"], "units"),
}
"""The paper's ablations (README, "Comparing data recipes"): each value, and the first stage it reruns."""


@pytest.mark.parametrize("name", ABLATIONS)
def test_an_ablation_reruns_only_the_stages_from_the_one_it_changes(name):
    values, first = ABLATIONS[name]
    names = [stage.name for stage in stages_of("entropylong")]
    base = _keys(BASE)
    for value in values:
        keys = _keys(dataclasses.replace(BASE, **{name: value}))
        rerun = {stage for stage in names if keys[stage] != base[stage]}
        assert rerun == set(names[names.index(first) :]), (name, value)
        assert keys["index"] == base["index"]  # every variant shares the corpus index


def test_noverify_reuses_the_entropy_and_retrieval_of_entropylong():
    entropylong, noverify = _keys(BASE), _keys(dataclasses.replace(BASE, method="noverify"))
    assert [stage.name for stage in stages_of("noverify")] == [
        "entropy", "retrieval", "top1", "units"
    ]  # fmt: skip
    assert (noverify["entropy"], noverify["retrieval"]) == (entropylong["entropy"], entropylong["retrieval"])
    assert noverify["units"] != entropylong["units"]


def test_every_declared_input_has_an_identity_and_an_attribute():
    identities = input_identities(BASE, "corpus")
    properties = {name for name, value in vars(BuildInputs).items() if isinstance(value, property)}
    assert set(identities) == properties | {"corpus"}  # the corpus is a plain attribute
    for method in tuple(METHODS):
        for stage in stages_of(method):
            assert set(stage.inputs) <= set(identities), stage.name


def test_a_stage_sees_only_its_declared_inputs_and_sets_only_its_statuses():
    class Inputs:
        seed, max_seq_length, device = 7, 100, "cuda:1"

    view = InputView(Inputs(), ("seed",), "units")
    assert view.seed == 7
    with pytest.raises(AttributeError, match="reads the input 'max_seq_length' without declaring it"):
        getattr(view, "max_seq_length")  # noqa: B009

    stage = dataclasses.replace(
        STAGES[1], function=lambda batch, settings, inputs: {"status": ["no_verified_context"]}
    )
    with pytest.raises(ValueError, match="undeclared status 'no_verified_context'"):
        build_module._apply({"status": ["ok"]}, stage, None, Inputs())


def test_out_of_memory_names_the_stage_and_the_setting_to_lower():
    class Inputs:
        device = "cuda:1"

    def exhausted(batch, settings, inputs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    verify = next(stage for stage in STAGES if stage.name == "verify")
    with pytest.raises(
        MemoryError, match=r"stage 'verify' ran out of memory on cuda:1: lower --verify_batch_size"
    ):
        build_module._apply(
            {"status": ["ok"]}, dataclasses.replace(verify, function=exhausted), None, Inputs()
        )


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"alpha": -1.0}, "alpha must be >= 0"),
        ({"order": "random"}, "order must be 'shuffle' or 'sequence'"),
        ({"lm_dtype": "fp8"}, "lm_dtype must be"),
        ({"epsilon": 0.0}, "epsilon must be in"),
        ({"shard_size": 0}, "shard_size must be positive"),
        ({"num_roots": 0}, "num_roots must be positive"),
        ({"top_k": 0}, "top_k must be positive"),
        ({"min_row_fill": 1.5}, "min_row_fill must be in"),
        ({"max_seq_length": 1}, "max_seq_length must be at least 2"),
        ({"push_to_hub": True}, "hub_repo_id"),
    ],
)
def test_bad_values_are_refused_by_their_group(overrides, message):
    with pytest.raises(ValueError, match=message):
        BuildConfig(**overrides)


ZERO_MEANS_SOMETHING = {
    "alpha",
    "min_left_context",
    "seed",
    "min_row_fill",
    "index_gpu_reserve_gib",
    "gpus_per_task",
}


def _numeric_settings() -> list[tuple[str, bool]]:
    """(name, takes floats) of every number-valued build setting."""
    hints = typing.get_type_hints(BuildConfig)
    found = []
    for field in dataclasses.fields(BuildConfig):
        types = set(typing.get_args(hints[field.name]) or (hints[field.name],))
        if types & {int, float} and bool not in types:
            found.append((field.name, float in types))
    return found


def test_every_number_setting_refuses_negative_zero_and_non_finite_values_by_name():
    numeric = _numeric_settings()
    assert {"seed", "alpha", "epsilon", "embedder_max_seq_length", "top_k"} <= {name for name, _ in numeric}
    for name, takes_floats in numeric:
        bad = [-1, *([] if name in ZERO_MEANS_SOMETHING else [0])]
        bad += [float("nan"), float("inf"), float("-inf")] if takes_floats else []
        for value in bad:
            with pytest.raises(ValueError, match=rf"^{name} must "):
                BuildConfig(**{name: value})


# What a build recipe names that this machine cannot run as named: its models and data (the Hub), the GPU index
EMBEDDED_SWAP = {
    "lm": "embedded:SmolLM2-135M-Instruct",
    "lm_dtype": "float32",
    "attn_implementation": None,
    "embedder": "embedded:all-MiniLM-L6-v2",
    "query_prompt_name": None,  # prompts belong to the embedder
    "document_prompt_name": None,
    "index_on_gpu": False,
    "trust_remote_code": False,
}


@pytest.mark.parametrize("recipe", sorted(RECIPES.glob("*.yaml")), ids=lambda path: path.name)
def test_build_recipes_validate_with_embedded_models(recipe, docs_file, tmp_path):
    """Each build recipe, its models and sources swapped for the embedded ones and the crafted corpus: its settings
    pass BuildConfig's checks, the sources load, its method's stages exist and FAISS makes its index_factory."""
    from trl import TrlParser

    from hf_entropylong.builder.runner import load_inputs

    (config,) = TrlParser((BuildConfig,)).parse_args_and_config(args=["--config", str(recipe)])
    swapped = {key: value for key, value in EMBEDDED_SWAP.items() if getattr(config, key) != value}
    sources = {
        "roots": str(docs_file),
        "corpus": [str(docs_file)],
        "num_roots": 2,
        "output_dir": str(tmp_path),
    }
    config = dataclasses.replace(config, **swapped, **sources)
    roots, _, _, inputs = load_inputs(config)
    assert len(roots) == 2 and stages_of(config.method)
    inputs.check_index_factory()


@pytest.mark.parametrize("recipe", sorted(RECIPES.glob("*.yaml")), ids=lambda path: path.name)
def test_build_recipes_parse(recipe):
    from trl import TrlParser

    (config,) = TrlParser((BuildConfig,)).parse_args_and_config(args=["--config", str(recipe)])
    assert config.max_seq_length >= 8192 and config.epsilon == 0.4 and config.alpha == 2.0
    if recipe.name == "llama3-8b-128k.yaml":
        assert (config.lm, config.max_seq_length, config.window_words) == (
            "meta-llama/Meta-Llama-3-8B",
            131_072,
            16,
        )
