"""Task generation at small lengths: templates, needles, length accounting in model tokens, determinism."""

import copy
import json
import random
import re

import pytest
from transformers import AutoTokenizer

from hf_entropylong.eval.chat import chat_prompt
from hf_entropylong.eval.haystack import (
    common_words,
    essay_words,
    haystack_name,
    key_words,
    load_hotpotqa,
    load_squad,
    split_sentences,
    word_list,
)
from hf_entropylong.eval.ruler_tasks import (
    BUILDERS,
    NOISE,
    TASK_NAMES,
    Resources,
    count_tokens,
    generate_samples,
    lm_eval_prompt,
    metric_for,
    tokens_to_generate,
)
from hf_entropylong.models import EMBEDDED_CORPUS, EMBEDDED_EMBEDDER, resolve_model

SYNTHETIC = [task for task in TASK_NAMES if not task.startswith("qa")]


def prompt_of(sample: dict, tokenizer, chat_template: bool = False) -> str:
    return lm_eval_prompt(tokenizer, sample["input"], sample["gen_prefix"], chat_template)


def test_thirteen_tasks_with_rulers_metrics():
    assert len(TASK_NAMES) == 13
    assert [t for t in TASK_NAMES if metric_for(t) == "part"] == ["qa_1", "qa_2"]
    assert tokens_to_generate("niah_single_1") == 128 and tokens_to_generate("vt") == 30
    assert (
        tokens_to_generate("cwe") == 120
        and tokens_to_generate("fwe") == 50
        and tokens_to_generate("qa_1") == 32
    )


@pytest.mark.parametrize("task", SYNTHETIC)
def test_samples_fill_the_length_in_model_tokens(task, tokenizer):
    length = 1024
    samples = generate_samples(task, tokenizer, length, 2)
    assert len(samples) == 2
    for sample in samples:
        prompt_tokens = len(tokenizer(prompt_of(sample, tokenizer)).input_ids)
        assert sample["length"] == prompt_tokens + tokens_to_generate(task)
        assert sample["length"] <= length
        assert sample["length"] >= 0.85 * length  # the haystack grows to (almost) the target
        assert sample["max_length"] == length and sample["metric"] == "all"
        for expected in sample["outputs"]:
            assert expected in sample["input"]  # every answer is findable in the context


def test_length_is_counted_with_the_evaluated_models_tokenizer(tokenizer):
    other = AutoTokenizer.from_pretrained(
        resolve_model(EMBEDDED_EMBEDDER)
    )  # BERT WordPiece, not SmolLM2's BPE
    ours = generate_samples("niah_single_2", tokenizer, 1024, 1)[0]
    theirs = generate_samples("niah_single_2", other, 1024, 1)[0]
    assert len(other(prompt_of(theirs, other)).input_ids) + 128 == theirs["length"] <= 1024
    assert len(ours["input"]) != len(theirs["input"])  # same token budget, different amounts of text


def test_niah_prompts_follow_rulers_template(tokenizer):
    single = generate_samples("niah_single_1", tokenizer, 1024, 1)[0]
    assert single["input"].startswith("A special magic number is hidden within the following text.")
    key = re.search(
        r"What is the special magic number for (.+) mentioned in the provided text\?", single["input"]
    )
    assert single["input"].endswith(" mentioned in the provided text?")
    assert (
        single["gen_prefix"]
        == f"The special magic number for {key.group(1)} mentioned in the provided text is"
    )
    assert prompt_of(single, tokenizer) == single["input"] + " " + single["gen_prefix"]
    assert NOISE in single["input"]
    assert f"is: {single['outputs'][0]}." in single["input"]

    multivalue = generate_samples("niah_multivalue", tokenizer, 1024, 1)[0]
    assert multivalue["input"].startswith("Some special magic numbers are hidden")
    assert multivalue["gen_prefix"].endswith(" mentioned in the provided text are")
    assert len(multivalue["outputs"]) == 4

    multiquery = generate_samples("niah_multiquery", tokenizer, 1024, 1)[0]
    assert len(multiquery["outputs"]) == 4 and ", and " in multiquery["input"][-300:]

    uuids = generate_samples("niah_multikey_3", tokenizer, 1024, 1)[0]
    assert re.fullmatch(
        r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", uuids["outputs"][0]
    )
    # the distractor haystack is made of needles with other keys
    assert uuids["input"].count("One of the special magic uuid") > 5


def test_other_tasks_follow_rulers_templates(tokenizer):
    vt = generate_samples("vt", tokenizer, 1024, 1)[0]
    assert vt["input"].count("Memorize and track the chain(s) of variable assignment") == 2  # example + task
    value = re.search(r"assigned the value (\d{5}) in the text above\.$", vt["input"]).group(1)
    assert vt["gen_prefix"].endswith(
        f"5 variables are assigned the value {value}, they are: "
    )  # RULER's trailing space
    first, *rest = vt["outputs"]
    assert re.search(rf"VAR {first} = \d{{5}}", vt["input"])
    assert all(f"VAR {b} = VAR {a}" in vt["input"] for a, b in zip(vt["outputs"], rest, strict=False))

    cwe = generate_samples("cwe", tokenizer, 1024, 1)[0]
    assert cwe["input"].endswith("Question: What are the 10 most common words in the above list?")
    assert cwe["gen_prefix"] == "Answer: The top 10 words that appear most often in the list are:"
    task_list = cwe["input"].split("Below is a numbered list of words.")[-1]
    counts = {word: len(re.findall(rf"\d+\. {word}(?= |\n)", task_list)) for word in cwe["outputs"]}
    assert len(cwe["outputs"]) == 10 and min(counts.values()) == 6  # below 4K: 6 repeats vs 1

    fwe = generate_samples("fwe", tokenizer, 1024, 1)[0]
    words = (
        fwe["input"].split("Find the three most frequently appeared coded words. ")[1].split("\n")[0].split()
    )
    ranked = sorted(set(words) - {"..."}, key=words.count, reverse=True)
    assert ranked[:3] == fwe["outputs"]


def test_generation_is_deterministic_for_a_seed(tokenizer):
    a = generate_samples("niah_multikey_1", tokenizer, 1024, 3, seed=7)
    b = generate_samples("niah_multikey_1", tokenizer, 1024, 3, seed=7)
    c = generate_samples("niah_multikey_1", tokenizer, 1024, 3, seed=8)
    assert a == b
    assert [s["outputs"] for s in a] != [s["outputs"] for s in c]
    # a sample depends only on (seed, task, length, index), not on how many were asked for
    assert generate_samples("niah_multikey_1", tokenizer, 1024, 1, seed=7)[0] == a[0]
    assert a[0]["outputs"] != a[1]["outputs"]


def test_fixed_depth_places_the_needle(tokenizer):
    def needle_position(depth):
        sample = generate_samples("niah_single_2", tokenizer, 2048, 1, depth=depth)[0]
        sentences = split_sentences(sample["input"].split("afterwards.\n", 1)[1].rsplit("\nWhat is", 1)[0])
        index = next(i for i, s in enumerate(sentences) if "One of the special magic" in s)
        return index / len(sentences)

    assert needle_position(0) < 0.05
    assert 0.4 < needle_position(50) < 0.6
    assert needle_position(100) > 0.95  # in (or right after) the last sentence
    with pytest.raises(ValueError, match="fixed needle depth"):
        generate_samples("vt", tokenizer, 1024, 1, depth=50)


def test_chat_template_is_counted(tokenizer):
    sample = generate_samples("niah_single_1", tokenizer, 1024, 1, chat_template=True)[0]
    prompt = prompt_of(sample, tokenizer, chat_template=True)
    assert prompt.startswith("<|im_start|>") and sample["input"].startswith("A special magic number")
    assert prompt.endswith(
        "<|im_start|>user\n" + sample["input"] + "<|im_end|>\n<|im_start|>assistant\n" + sample["gen_prefix"]
    )
    assert count_tokens(tokenizer, prompt) + 128 == sample["length"] <= 1024
    assert lm_eval_prompt(tokenizer, "Q?", "A:", False) == "Q? A:"


def test_qa_tasks_from_local_files(tokenizer, squad_file, hotpotqa_file):
    squad = load_squad(squad_file)
    assert len(squad.questions) == 2  # the unanswerable one is dropped
    samples = generate_samples("qa_1", tokenizer, 1024, 2, resources=Resources(qa=squad))
    first = samples[0]
    assert first["metric"] == "part" and first["outputs"] == ["the Black Sea", "Black Sea"]
    assert "The Danube flows through ten countries" in first["input"]
    assert first["input"].startswith("Answer the question based on the given documents.")
    assert (
        first["input"].endswith("Question: Where does the Danube end?") and first["gen_prefix"] == "Answer:"
    )
    assert first["input"].count("Document ") > 10 and first["length"] <= 1024
    hotpot = load_hotpotqa(hotpotqa_file)
    sample = generate_samples("qa_2", tokenizer, 512, 1, resources=Resources(qa=hotpot))[0]
    assert "Vienna\nVienna is the capital of Austria." in sample["input"] and sample["outputs"] == ["Danube"]


def test_clear_errors(tokenizer, tmp_path):
    with pytest.raises(ValueError, match="Unknown RULER task"):
        generate_samples("niah_single_9", tokenizer, 1024, 1)
    with pytest.raises(ValueError, match="too short for vt"):
        generate_samples("vt", tokenizer, 200, 1)
    with pytest.raises(ValueError, match="needs a squad question file"):
        generate_samples("qa_1", tokenizer, 1024, 1)
    with pytest.raises(FileNotFoundError, match="SQuAD file"):
        load_squad(tmp_path / "absent.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_squad(bad)
    bad.write_text('{"data": [{"title": "x"}]}')
    with pytest.raises(ValueError, match="article 0 lacks"):
        load_squad(bad)
    bad.write_text('[{"question": "q"}]')
    with pytest.raises(ValueError, match="item 0 lacks"):
        load_hotpotqa(bad)


def _is_wonderwords_key(key: str) -> bool:
    adjectives, nouns = key_words()
    return any(key[:i] in adjectives and key[i + 1 :] in nouns for i, c in enumerate(key) if c == "-")


def test_keys_and_word_pools_come_from_wonderwords(tokenizer):
    from wonderwords import RandomWord

    adjectives, nouns = key_words()
    assert len(adjectives) > 900 and len(nouns) > 6000 and "that" not in nouns
    verbs = RandomWord().filter(include_categories=["verbs"])
    assert set(common_words()) == {*adjectives, *nouns, *verbs}
    keys = []
    for task in ("niah_single_2", "niah_multikey_1", "niah_multiquery", "niah_multikey_2"):
        for sample in generate_samples(task, tokenizer, 1024, 3):
            keys += re.findall(r"special magic numbers? for (.+?) is: ", sample["input"])
    assert len(keys) > 20 and all(_is_wonderwords_key(key) for key in keys)
    cwe = generate_samples("cwe", tokenizer, 1024, 2)
    pool = set(common_words())
    for sample in cwe:
        listed = re.findall(r"\d+\. ([^\d]+?)(?= \d+\.|\n|$)", sample["input"])
        assert set(sample["outputs"]) <= pool and set(listed) <= pool


def test_qa_gold_document_sits_at_one_slot_per_length(tokenizer, squad_file):
    resources = Resources(qa=load_squad(squad_file))
    slots = {}
    for length in (512, 1024):
        samples = generate_samples("qa_1", tokenizer, length, 6, resources=resources)
        for sample in samples:
            documents = re.findall(r"Document (\d+):\n([^\n]+)", sample["input"])
            answer = "Danube flows" if "Danube" in sample["input"][-100:] else "Kilimanjaro is the"
            gold = [int(n) for n, text in documents if answer in text]
            assert len(gold) == 1
            slots.setdefault((length, len(documents)), set()).add(gold[0])
    assert all(len(slot) == 1 for slot in slots.values())  # one slot for every sample of a length
    assert len({length for length, _ in slots}) == 2
    assert len({next(iter(slot)) for slot in slots.values()}) > 1  # the slot depends on the document count


def test_vt_puts_each_statement_on_its_own_line(tokenizer):
    sample = generate_samples("vt", tokenizer, 2048, 1)[0]
    example, task = sample["input"].split("\n\nMemorize and track", 1)
    assert example.startswith("Memorize and track") and "they are:  " in example  # RULER's double space
    assert re.search(r"they are:  [A-Z]{3}( [A-Z]{3}){4}$", example)
    assert count_tokens(tokenizer, example.rsplit(" they are: ", 1)[0] + " they are: ") <= 500
    for text in (example, task):
        context = text.split("following text.\n\n", 1)[1].split("\nQuestion:", 1)[0]
        lines = context.split("\n")
        statements = [line for line in lines if line.startswith("VAR ")]
        assert len(statements) == 5 and set(lines) - set(statements) == {NOISE}
        assert re.fullmatch(r"VAR [A-Z]+ = \d{5}", statements[0])
        assert all(re.fullmatch(r"VAR [A-Z]+ = VAR [A-Z]+ ", line) for line in statements[1:])
    names = sample["outputs"]
    assert all(f"VAR {b} = VAR {a} " in task for a, b in zip(names, names[1:], strict=False))


def test_needles_take_distinct_lines_before_the_last(tokenizer):
    for index in range(30):
        rng = random.Random(index)
        text, _, _ = BUILDERS["niah"](
            rng, 3, Resources(), seed=1, index=0, haystack="noise", key="words", value="numbers", num_k=3
        )
        lines = text.split("\n")[1:-1]
        assert len(lines) == 6 and lines[-1] == NOISE  # three needles among three lines, never after the last


def test_fwe_vocabulary_is_rulers(tokenizer):
    for length in (1024, 4096):
        text, _, answer = BUILDERS["fwe"](
            random.Random(0), 200_000, Resources(), seed=1, alpha=2.0, max_length=length, index=0
        )
        words = text.split("coded words. ")[1].split("\nQuestion")[0].split()
        assert len(set(words)) == (length - 50) // 50  # every coded word occurs at this size
        ranked = sorted(set(words) - {"..."}, key=words.count, reverse=True)
        assert ranked[:3] == answer and words.count("...") > words.count(answer[0])
    with pytest.raises(ValueError, match="too short for fwe"):
        generate_samples("fwe", tokenizer, 200, 1)


def test_essay_haystack_from_rulers_file_or_jsonl(tokenizer, tmp_path):
    essay = "Startups grow fast. " * 30 + "Founders should talk to users.  \n\n Hiring is hard."
    ruler_file = tmp_path / "PaulGrahamEssays.json"
    ruler_file.write_text(json.dumps({"text": essay}))
    jsonl = tmp_path / "essays.jsonl"
    jsonl.write_text(json.dumps({"text": essay[:300]}) + "\n" + json.dumps({"text": essay[300:]}) + "\n")
    assert essay_words(str(ruler_file)) == tuple(essay.split())
    assert haystack_name(str(ruler_file)) == "PaulGrahamEssays.json"
    assert haystack_name(EMBEDDED_CORPUS) == EMBEDDED_CORPUS
    sample = generate_samples("niah_single_2", tokenizer, 1024, 1, resources=Resources(str(ruler_file)))[0]
    assert "Startups grow fast." in sample["input"] and "Founders should talk" in sample["input"]
    assert sample["length"] > 900  # the 100-word haystack repeats to fill the length, as in RULER
    assert generate_samples("niah_single_2", tokenizer, 512, 1, resources=Resources(str(jsonl)))
    bad = tmp_path / "list.json"
    bad.write_text(json.dumps([{"text": essay}]))
    with pytest.raises(ValueError, match="PaulGrahamEssays.json"):
        essay_words(str(bad))
    with pytest.raises(FileNotFoundError, match="Haystack 'absent.json' not found"):
        essay_words("absent.json")


def test_chat_prompt_has_no_default_system_prompt(tokenizer):
    messages = [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A:"}]
    assert "You are a helpful" in tokenizer.apply_chat_template(messages, tokenize=False)
    assert chat_prompt(tokenizer, messages) == "<|im_start|>user\nQ?<|im_end|>\n<|im_start|>assistant\nA:"
    assert chat_prompt(tokenizer, messages[:1], add_generation_prompt=True).endswith(
        "<|im_start|>assistant\n"
    )


def test_chat_prompt_keeps_the_head_of_a_llama3_style_template(tokenizer):
    llama = copy.deepcopy(tokenizer)
    llama.chat_template = (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: 2023\n\n"
        "{% if messages[0]['role'] == 'system' %}{{ messages[0]['content'] }}{% set messages = messages[1:] %}"
        "{% endif %}<|eot_id|>{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
        "{{ m['content'] }}{% if not (loop.last and m['role'] == 'assistant' and continue_final_message) %}"
        "<|eot_id|>{% endif %}{% endfor %}"
    )
    messages = [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A:"}]
    assert chat_prompt(llama, messages, False) == (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nQ?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nA:"
    )


def test_cwe_draws_beyond_wonderwords_from_rulers_word_list_when_given(tmp_path):
    pool = len(common_words())
    words = {
        str(i): f"zq{i:05d}" for i in range(pool + 100)
    }  # RULER's english_words.json: an object of words
    file = tmp_path / "english_words.json"
    file.write_text(json.dumps(words))
    size = pool + 50 - 10  # more words than wonderwords has
    text, _, answer = BUILDERS["cwe"](
        random.Random(0), size, Resources(cwe_words=str(file)), seed=1, freq_cw=30, freq_ucw=3, num_cw=10,
        max_length=131072, index=0,
    )  # fmt: skip
    listed = set(text.split("\n")[-2].split()[1::2])  # the second numbered list: "1. w 2. w ..."
    assert len(listed) == pool + 50 and listed <= set(words.values()) and set(answer) <= listed
    fallback = BUILDERS["cwe"](
        random.Random(0),
        size,
        Resources(),
        seed=1,
        freq_cw=30,
        freq_ucw=3,
        num_cw=10,
        max_length=131072,
        index=0,
    )[2]
    assert not set(fallback) & set(words.values())  # without the list: the haystack's vocabulary
    (tmp_path / "numbers.json").write_text('{"a": 1}')
    with pytest.raises(ValueError, match=r"--cwe_words: .*numbers.json must be a JSON object of words"):
        word_list(str(tmp_path / "numbers.json"))
