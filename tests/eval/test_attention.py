"""`eval attention`: the probe's per-layer values against full eager attention, the probe layout, the command."""

import json

import pytest
import torch
from tiny_models import tiny_llama

from hf_entropylong.cli import main as cli_main
from hf_entropylong.eval.attention import (
    PROBE_ATTENTION,
    AttentionArguments,
    _register,
    build_probe,
    evaluate,
    measure,
    parse_args,
    probes_for,
    relative_gain,
    summary_table,
)
from hf_entropylong.eval.haystack import essay_words, split_sentences
from hf_entropylong.models import EMBEDDED_CORPUS, load_causal_lm


@pytest.fixture(scope="module")
def probe_model(tiny_model_dir):
    _register()
    return load_causal_lm(tiny_model_dir, dtype="float32", device="cpu", attn_implementation=PROBE_ATTENTION)


@pytest.mark.parametrize("depth", [0, 50, 100])
def test_per_layer_values_equal_full_eager_attention(tiny_model_dir, probe_model, tokenizer, depth):
    (probe,) = probes_for(tokenizer, 200, depth, 1, EMBEDDED_CORPUS, seed=3)
    result = measure(probe_model, [probe])
    eager = load_causal_lm(tiny_model_dir, dtype="float32", device="cpu", attn_implementation="eager")
    with torch.no_grad():
        attentions = eager(torch.tensor([probe.input_ids]), output_attentions=True).attentions
    expected = [layer[0][:, probe.rows][:, :, probe.columns].sum(-1).mean().item() for layer in attentions]
    assert len(result["per_layer"]) == len(expected) == 2
    assert result["per_layer"] == pytest.approx(expected, rel=1e-5, abs=1e-7)
    assert result["mean"] == pytest.approx(sum(expected) / 2, rel=1e-5)
    assert all(value > 0 for value in expected)


def test_the_probe_does_not_change_the_model_output(tiny_model_dir, probe_model, tokenizer):
    (probe,) = probes_for(tokenizer, 150, 25, 1, EMBEDDED_CORPUS, seed=1)
    ids = torch.tensor([probe.input_ids])
    sdpa = load_causal_lm(tiny_model_dir, dtype="float32", device="cpu", attn_implementation="sdpa")
    with torch.no_grad():
        expected = sdpa(ids).logits
        actual = probe_model(ids, attention_probe=probe).logits
    torch.testing.assert_close(actual, expected)


def test_probe_layout(tokenizer):
    sentences = split_sentences(" ".join(essay_words()[:300]))
    probe = build_probe(tokenizer, sentences, 50, "brave-otter", "1234567")
    text = tokenizer.decode(probe.input_ids)
    answer = tokenizer.decode([probe.input_ids[i] for i in probe.columns])
    question = tokenizer.decode([probe.input_ids[i] for i in probe.rows])
    assert answer.strip() == "One of the special magic numbers for brave-otter is: 1234567."
    assert (
        question.strip() == "What is the special magic number for brave-otter mentioned in the provided text?"
    )
    assert probe.rows[-1] == len(probe.input_ids) - 1 and probe.rows == list(
        range(probe.rows[0], len(probe.input_ids))
    )
    assert 0.4 < text.index(answer.strip()) / len(text) < 0.6
    front = build_probe(tokenizer, sentences, 0, "brave-otter", "1234567")
    assert front.columns[0] == 1  # the answer opens the sequence, but its first token is the attention sink
    probes = probes_for(tokenizer, 512, 75, 3, EMBEDDED_CORPUS, seed=0)
    assert all(480 < len(p.input_ids) <= 512 for p in probes)
    assert len({tuple(p.columns) for p in probes}) >= 1 and probes[0].input_ids != probes[1].input_ids


def test_relative_gain_and_arguments():
    assert relative_gain(1.125, 1.0) == pytest.approx(12.5)
    assert relative_gain(0.5, 1.0) == pytest.approx(-50)
    args = parse_args(["m1", "m2", "--lengths", "256", "512", "--samples", "2"])
    assert args.models == ["m1", "m2"] and args.lengths == [256, 512] and args.depth_length == 512
    with pytest.raises(ValueError, match="one or more models"):
        AttentionArguments()
    with pytest.raises(ValueError, match="--depths are percents"):
        AttentionArguments(models=["m"], depths=[120])


def test_the_depth_axis_is_labelled_as_the_papers_distance_from_the_question():
    cell = {"mean": 0.5, "per_layer": [0.5], "tokens": [10]}
    results = {"m": {"by_length": {"1024": cell}, "by_depth": {"0": cell, "25": cell, "100": cell}}}
    labels = [line.split(" | ")[0].lstrip("| ") for line in summary_table(results, {}).splitlines()[2:]]
    assert labels == [
        "length 1K, distance 100%",  # the length sweep: the answer at the front, as far as it can be
        "distance 100% (depth 0%)",
        "distance 75% (depth 25%)",
        "distance 0% (depth 100%)",  # the answer just before the question
    ]


def test_a_sliding_window_model_is_refused_in_one_line(tokenizer, tmp_path):
    from transformers import MistralConfig, MistralForCausalLM

    torch.manual_seed(0)
    config = MistralConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096, sliding_window=64,
    )  # fmt: skip
    MistralForCausalLM(config).save_pretrained(tmp_path / "mistral")
    tokenizer.save_pretrained(tmp_path / "mistral")
    args = AttentionArguments(
        models=[str(tmp_path / "mistral")],
        lengths=[128],
        depths=[0],
        samples=1,
        output_dir=str(tmp_path / "o"),
    )
    with pytest.raises(ValueError, match=r"^[^\n]*uses sliding-window attention \(window 64\)[^\n]*$"):
        evaluate(args)
    assert not (tmp_path / "o" / "attention.json").exists()


def test_attention_command_end_to_end(tiny_model_dir, tokenizer, tmp_path):
    other = tmp_path / "other"
    model = tiny_llama(vocab_size=49152, max_position_embeddings=4096, rope_theta=100.0)
    model.save_pretrained(other)
    tokenizer.save_pretrained(other)
    out = tmp_path / "attention"
    cli_main(
        ["eval", "attention", tiny_model_dir, str(other), "--lengths", "128", "256", "--depths", "0", "100"]
        + ["--samples", "2", "--output_dir", str(out)]
    )
    report = json.loads((out / "attention.json").read_text())
    results = report["results"]
    assert set(results) == {tiny_model_dir, str(other)}
    assert set(results[tiny_model_dir]["by_length"]) == {"128", "256"}
    assert set(results[tiny_model_dir]["by_depth"]) == {"0", "100"}
    first, second = results[tiny_model_dir], results[str(other)]
    gain = report["relative_gain"][str(other)]["by_depth"]["100"]
    assert gain == pytest.approx(
        relative_gain(first["by_depth"]["100"]["mean"], second["by_depth"]["100"]["mean"]), abs=0.05
    )
    assert report["config"]["haystack_name"] == EMBEDDED_CORPUS
    for name in ("attention_vs_length.png", "attention_vs_depth.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
