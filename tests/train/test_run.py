"""What `train cpt` and `train sft` share: reading the data source, required settings, the context window."""

import json

import pytest
import torch
from transformers import LlamaConfig

from hf_entropylong.sources import SourceError
from hf_entropylong.train import cpt, sft
from hf_entropylong.train.run import build_trainer, check_context_window, load_train_split, parse_args
from hf_entropylong.train.spans import FLEX_BLOCK_SIZE

from .conftest import REPO, tiny_cpt_args

CONVERSATIONS = [
    {"messages": [{"role": "user", "content": f"{i} + 1?"}, {"role": "assistant", "content": str(i + 1)}]}
    for i in range(5)
]


def sft_run_args(*flags: str):
    return parse_args(["--config", str(REPO / "recipes/tiny/sft.yaml"), *flags], prog="test")


def test_train_split_from_a_file_or_a_folder(tmp_path):
    folder = tmp_path / "chats"
    folder.mkdir()
    file = folder / "train.jsonl"
    file.write_text("".join(json.dumps(row) + "\n" for row in CONVERSATIONS))
    for source in (file, folder):
        dataset = load_train_split(sft_run_args("--dataset_name", str(source), "--max_train_samples", "3"))
        assert dataset.column_names == ["messages"] and len(dataset) == 3
        assert dataset[2]["messages"][1]["content"] == "3"
    assert len(load_train_split(sft_run_args("--dataset_name", str(file)))) == len(CONVERSATIONS)


def test_conversations_need_messages(tmp_path, tokenizer):
    table = tmp_path / "train.csv"
    table.write_text("text\nhello\n")
    with pytest.raises(ValueError, match=r"train.csv \[train\]: no 'messages' column \(found \['text'\]\)"):
        sft.load_conversations(sft_run_args("--dataset_name", str(table)), tokenizer)


def test_unsupported_file_is_a_source_error(tmp_path):
    (tmp_path / "train.xml").write_text("<messages/>")
    with pytest.raises(SourceError, match="unsupported file type"):
        load_train_split(sft_run_args("--dataset_name", str(tmp_path / "train.xml")))


def test_required_settings(tmp_path):
    with pytest.raises(ValueError, match="dataset_name is required"):
        load_train_split(sft_run_args("--dataset_name", ""))
    with pytest.raises(ValueError, match="model_name_or_path is required"):
        tiny_cpt = ["--config", str(REPO / "recipes/tiny/cpt.yaml"), "--model_name_or_path", ""]
        build_trainer("cpt", tiny_cpt, cpt.load_packed_data)


def test_context_window_check():
    config = LlamaConfig(max_position_embeddings=256)
    check_context_window(config, 256, "data")
    check_context_window(config, None, "data")  # SFT without truncation: nothing to check
    with pytest.raises(
        ValueError, match=r"data: rows of 257 tokens exceed the model's context window \(256\)"
    ):
        check_context_window(config, 257, "data")


def test_model_from_config_is_seeded(packed_dir, tmp_path):
    """`init_from_config` gives the same random weights on every run (the seed is set before the model is built)."""
    args = tiny_cpt_args(packed_dir, tmp_path)
    first = build_trainer("cpt", args, cpt.load_packed_data).model.state_dict()
    torch.manual_seed(1)  # whatever the global RNG state, the run's own seed decides
    second = build_trainer("cpt", args, cpt.load_packed_data).model.state_dict()
    assert first.keys() == second.keys()
    for name, tensor in first.items():
        assert torch.equal(second[name], tensor), name


def test_packed_rows_refuse_another_max_length(packed_dir, tmp_path, tokenizer):
    """`--max_length` cannot re-pack built rows: a different value is refused, the rows' own is accepted."""
    with pytest.raises(ValueError, match="max_length=128, but .* rows of 256 tokens"):
        cpt.load_packed_data(
            parse_args(tiny_cpt_args(packed_dir, tmp_path, "--max_length", "128"), "t"), tokenizer
        )
    args = parse_args(tiny_cpt_args(packed_dir, tmp_path, "--max_length", "256"), "test")
    assert cpt.load_packed_data(args, tokenizer).dataset.num_rows > 0 and args.training.max_length == 256


def test_hub_token_is_refused(packed_dir, tmp_path):
    """A token among the arguments would be pickled into training_args.bin and pushed with the model."""
    with pytest.raises(ValueError, match="hub_token would be saved in plain text"):
        build_trainer(
            "cpt", tiny_cpt_args(packed_dir, tmp_path, "--hub_token", "hf_secret"), cpt.load_packed_data
        )


def test_flex_attention_batches_fill_whole_blocks(packed_dir, tmp_path):
    args = tiny_cpt_args(
        packed_dir, tmp_path, "--attn_implementation", "flex_attention", "--max_train_samples", "3"
    )
    trainer = build_trainer("cpt", args, cpt.load_packed_data)
    assert trainer.args.pad_to_multiple_of == FLEX_BLOCK_SIZE
    assert trainer.data_collator.pad_to_multiple_of == FLEX_BLOCK_SIZE  # its padding: test_spans
    default = build_trainer("cpt", tiny_cpt_args(packed_dir, tmp_path), cpt.load_packed_data)
    assert default.args.pad_to_multiple_of is None


def test_a_recipe_and_its_files_are_found_from_any_directory(tmp_path, monkeypatch):
    """`--config recipes/tiny/sft.yaml` outside a checkout reads the installed recipe, and its `recipes/...` data
    file and chat template too; a file of that name in the current directory wins."""
    from hf_entropylong.cli import with_installed_config
    from hf_entropylong.paths import RECIPES_DIR

    monkeypatch.chdir(tmp_path)
    args = parse_args(with_installed_config(["--config", "recipes/tiny/sft.yaml"]), prog="test")
    assert args.long.recipe == str(RECIPES_DIR / "tiny/sft.yaml")
    assert args.script.dataset_name == str(RECIPES_DIR / "tiny/chat.jsonl")
    assert args.training.chat_template_path == str(RECIPES_DIR / "tiny/chat_template.jinja")
    (tmp_path / "recipes/tiny").mkdir(parents=True)
    (tmp_path / "recipes/tiny/chat.jsonl").write_text(json.dumps(CONVERSATIONS[0]) + "\n")
    assert parse_args(
        with_installed_config(["--config", "recipes/tiny/sft.yaml"]), prog="test"
    ).script.dataset_name == ("recipes/tiny/chat.jsonl")


@pytest.mark.parametrize(
    "parallelism, message",
    [
        ({"cp_size": 2}, "context parallelism"),
        (
            {"sp_size": 2, "sp_backend": "deepspeed", "sp_attn": "sdpa"},
            "only varlen kernels keep packed units",
        ),
    ],
    ids=["context-parallel", "ulysses-sdpa"],
)
def test_the_trainer_refuses_parallelism_that_mixes_units(
    packed_dir, tmp_path, monkeypatch, parallelism, message
):
    """Built through the recipes' entry point, with the accelerator reporting an unsafe parallelism config."""
    import accelerate
    import transformers
    from accelerate.utils import DeepSpeedSequenceParallelConfig

    attn = parallelism.pop("sp_attn", None)
    handler = {"sp_handler": DeepSpeedSequenceParallelConfig(sp_attn_implementation=attn)} if attn else {}
    config = accelerate.ParallelismConfig(**parallelism, **handler)
    create_accelerator = transformers.Trainer.create_accelerator_and_postprocess

    def create_then_report_the_config(
        trainer,
    ):  # the accelerator itself is built as launched (no parallelism)
        create_accelerator(trainer)
        monkeypatch.setattr(accelerate.Accelerator, "parallelism_config", property(lambda self: config))

    monkeypatch.setattr(
        transformers.Trainer, "create_accelerator_and_postprocess", create_then_report_the_config
    )
    with pytest.raises(ValueError, match=message):
        build_trainer("cpt", tiny_cpt_args(packed_dir, tmp_path), cpt.load_packed_data)
