"""The 13 RULER tasks, generated offline and sized in the evaluated model's tokens.

Each task follows RULER v1's configuration (`scripts/synthetic.yaml`) and prompt templates
(`scripts/data/synthetic/constants.py`) as of NVIDIA/RULER commit c3f5e3b (see `ruler.py`). A sample is
the task text (`input`, holding the haystack) and RULER's answer prefix (`gen_prefix`); lm-eval joins
them (after the chat template's assistant header with `--apply_chat_template`) and the model continues
greedily.

| task | haystack | needles |
|---|---|---|
| niah_single_1 | noise | 1 key (words) → 1 value (7-digit number) |
| niah_single_2 | essay | 1 key (words) → 1 number |
| niah_single_3 | essay | 1 key (words) → 1 UUID |
| niah_multikey_1 | essay | 4 keys, 1 asked |
| niah_multikey_2 | needle (distractor needles) | 1 key (words) → number |
| niah_multikey_3 | needle | 1 key (UUID) → UUID |
| niah_multivalue | essay | 1 key → 4 numbers, all asked |
| niah_multiquery | essay | 4 keys, all 4 asked |
| vt | noise | 1 chain of 4 hops; one in-context example first |
| cwe | numbered word list | 10 common words (30×, or 6× under 4K) among words seen 3× (1×); one example |
| fwe | Zipf(α=2) coded words | the 3 most frequent |
| qa_1 / qa_2 | SQuAD / HotpotQA paragraphs | gold paragraphs among distractors |

**Length accounting.** A sample for length L is the largest haystack with
`tokens(prompt) + tokens_to_generate ≤ L`, where `tokens` is the evaluated model's tokenizer applied to
the exact prompt lm-eval will send (`lm_eval_prompt`, chat template included). The haystack size is found by a doubling
then binary search on a probe sample; every sample then shrinks its own haystack (by 2% steps) until it
fits, since random needles and keys change the token count slightly. Scoring is RULER's:
`all` (share of the expected strings found) for NIAH/VT/CWE/FWE and `part` (any of them) for QA.

**Determinism.** Sample `i` of task `t` at length `L` draws from `random.Random(f"{seed}/{t}/{L}/{i}")`,
so a sample never depends on which other tasks, lengths or samples were asked for.
"""

from __future__ import annotations

import math
import random
import string
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from ..models import EMBEDDED_CORPUS
from .haystack import NOISE, QASet, essay_words, split_sentences, vocabulary

NIAH_TEMPLATE = (
    "Some special magic {type_needle_v} are hidden within the following text. Make sure to memorize it. "
    "I will quiz you about the {type_needle_v} afterwards.\n{context}\n"
    "What are all the special magic {type_needle_v} for {query} mentioned in the provided text?"
)
NIAH_PREFIX = " The special magic {type_needle_v} for {query} mentioned in the provided text are"
NEEDLE = "One of the special magic {type_needle_v} for {key} is: {value}."
VT_TEMPLATE = (
    "Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n{context}\n"
    "Question: Find all variables that are assigned the value {query} in the text above."
)
VT_PREFIX = (
    " Answer: According to the chain(s) of variable assignment in the text above, {num_v} variables are "
    "assigned the value {query}, they are: "
)
CWE_TEMPLATE = (
    "Below is a numbered list of words. In these words, some appear more often than others. Memorize the ones "
    "that appear most often.\n{context}\nQuestion: What are the 10 most common words in the above list?"
)
CWE_PREFIX = " Answer: The top 10 words that appear most often in the list are:"
FWE_TEMPLATE = (
    "Read the following coded text and track the frequency of each coded word. Find the three most frequently "
    "appeared coded words. {context}\nQuestion: Do not provide any explanation. Please ignore the dots '....'. "
    "What are the three most frequently appeared words in the above coded text?"
)
FWE_PREFIX = " Answer: According to the coded text above, the three most frequently appeared words are:"
QA_INSTRUCTION = "Answer the question based on the given documents. Only give me the answer and do not output any other words."
QA_TEMPLATE = (
    QA_INSTRUCTION
    + "\n\nThe following are given documents.\n\n{context}\n\n"
    + QA_INSTRUCTION
    + "\n\nQuestion: {query}"
)
QA_PREFIX = " Answer:"
DEPTHS = [round(100 * i / 39) for i in range(40)]  # RULER's 40 insertion depths, in percent

# task → (builder kind, arguments)
TASKS: dict[str, tuple[str, dict]] = {
    "niah_single_1": ("niah", {"haystack": "noise", "key": "words", "value": "numbers"}),
    "niah_single_2": ("niah", {"haystack": "essay", "key": "words", "value": "numbers"}),
    "niah_single_3": ("niah", {"haystack": "essay", "key": "words", "value": "uuids"}),
    "niah_multikey_1": ("niah", {"haystack": "essay", "key": "words", "value": "numbers", "num_k": 4}),
    "niah_multikey_2": ("niah", {"haystack": "needle", "key": "words", "value": "numbers"}),
    "niah_multikey_3": ("niah", {"haystack": "needle", "key": "uuids", "value": "uuids"}),
    "niah_multivalue": ("niah", {"haystack": "essay", "key": "words", "value": "numbers", "num_v": 4}),
    "niah_multiquery": ("niah", {"haystack": "essay", "key": "words", "value": "numbers", "num_q": 4}),
    "vt": ("vt", {"num_hops": 4}),  # RULER's single chain
    "cwe": ("cwe", {"freq_cw": 30, "freq_ucw": 3, "num_cw": 10}),
    "fwe": ("fwe", {"alpha": 2.0}),
    "qa_1": ("qa", {"dataset": "squad"}),
    "qa_2": ("qa", {"dataset": "hotpotqa"}),
}
TASK_NAMES = tuple(TASKS)
QA_DATASETS = {task: args["dataset"] for task, (kind, args) in TASKS.items() if kind == "qa"}
TOKENS_TO_GENERATE = {"niah": 128, "vt": 30, "cwe": 120, "fwe": 50, "qa": 32}  # RULER's budgets per kind
DEFAULT_SEED = 42
DEFAULT_LENGTHS = (4096,)  # lm-eval's RULER default
HEATMAP_TASK = "niah_single_2"  # the needle-in-a-haystack grid: one needle in the essay haystack
HEATMAP_DEPTHS = (0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100)


def metric_for(task: str) -> str:
    """RULER's metric of `task`: `part` for QA, `all` otherwise."""
    return "part" if TASKS[task][0] == "qa" else "all"


def tokens_to_generate(task: str) -> int:
    """RULER's generation budget of `task` in tokens (counted in its length, set in its lm-eval task)."""
    return TOKENS_TO_GENERATE[TASKS[task][0]]


@dataclass
class Resources:
    """What the builders draw from: the essay word stream, the vocabulary and (for QA) the question set."""

    corpus: str = EMBEDDED_CORPUS
    qa: QASet | None = None

    @property
    def essay(self) -> tuple[str, ...]:
        return essay_words(self.corpus)

    @property
    def words(self) -> tuple[str, ...]:
        return vocabulary(self.corpus)


def _random_value(rng: random.Random, kind: str, words: tuple[str, ...]) -> str:
    if kind == "numbers":
        return str(rng.randint(1_000_000, 9_999_999))
    if kind == "uuids":
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))
    return f"{rng.choice(words)}-{rng.choice(words)}"


def _niah(rng, size, res, *, haystack, key, value, num_k=1, num_v=1, num_q=1, depth=None, index):
    num_k = max(num_k, num_q)
    keys, values, needles = [], [], []
    for _ in range(num_k):
        keys.append(_random_value(rng, key, res.words))
        values.append([_random_value(rng, value, res.words) for _ in range(num_v)])
        needles += [NEEDLE.format(type_needle_v=value, key=keys[-1], value=v) for v in values[-1]]
    rng.shuffle(needles)
    if haystack == "essay":
        sentences = split_sentences(" ".join(res.essay[:size]))
        depths = [depth] * len(needles) if depth is not None else rng.sample(DEPTHS, len(needles))
        cuts = [0, *sorted(int(len(sentences) * d / 100) for d in depths), len(sentences)]
        parts = []
        for i in range(1, len(cuts)):
            parts.append(" ".join(sentences[cuts[i - 1] : cuts[i]]))
            if i - 1 < len(needles):
                parts.append(needles[i - 1])
        context = " ".join(part for part in parts if part)
    else:
        if haystack == "noise":
            lines = [NOISE] * size
        else:
            taken = set(keys)
            lines = []
            while len(lines) < size:
                distractor = _random_value(rng, key, res.words)
                if distractor not in taken:
                    lines.append(
                        NEEDLE.format(
                            type_needle_v=value, key=distractor, value=_random_value(rng, value, res.words)
                        )
                    )
        for position, needle in zip(
            sorted(rng.choices(range(size + 1), k=len(needles)), reverse=True), needles, strict=True
        ):
            lines.insert(position, needle)
        context = "\n".join(lines)
    asked = rng.sample(range(num_k), num_q)
    queries = [keys[i] for i in asked]
    answers = [v for i in asked for v in values[i]]
    query = queries[0] if num_q == 1 else ", ".join(queries[:-1]) + ", and " + queries[-1]
    template, prefix, type_v = NIAH_TEMPLATE, NIAH_PREFIX, value
    if num_q * num_v == 1:  # RULER's singular wording
        template = template.replace("Some", "A").replace("are all", "is").replace("are", "is")
        prefix, type_v = prefix.replace("are", "is"), value[:-1]
    return (
        template.format(type_needle_v=type_v, context=context, query=query),
        prefix.format(type_needle_v=type_v, query=query),
        answers,
    )


def _vt_text(rng, num_noises, num_hops, name_len):
    names: list[str] = []
    while len(names) < num_hops + 1:
        name = "".join(rng.choices(string.ascii_uppercase, k=name_len))
        if name not in names:
            names.append(name)
    value = rng.randint(10000, 99999)
    chain = [f"VAR {names[0]} = {value}"] + [f"VAR {names[j + 1]} = VAR {names[j]} " for j in range(num_hops)]
    sentences = [NOISE + "\n"] * num_noises
    for offset, position in enumerate(sorted(rng.choices(range(num_noises + 1), k=len(chain)))):
        sentences.insert(position + offset, chain[offset])
    context = " ".join(sentences).replace(". \n", ".\n")
    text = VT_TEMPLATE.format(context=context, query=value)
    return text, VT_PREFIX.format(num_v=num_hops + 1, query=value), names


def _vt(rng, size, res, *, num_hops, index):
    example, example_prefix, example_names = _vt_text(rng, 12, num_hops, 3)
    text, prefix, names = _vt_text(rng, size, num_hops, 5)
    return example + example_prefix + " ".join(example_names) + "\n\n" + text, prefix, names


def _numbered(words):
    return " ".join(f"{i + 1}. {word}" for i, word in enumerate(words))


def _cwe_list(rng, words, num_words, num_cw, freq_cw, freq_ucw):
    chosen = rng.sample(words, min(num_words, len(words)))
    common, uncommon = chosen[:num_cw], chosen[num_cw:]
    listed = common * freq_cw + uncommon * freq_ucw
    rng.shuffle(listed)
    return _numbered(listed), common


def _cwe(rng, size, res, *, freq_cw, freq_ucw, num_cw, max_length, index):
    short = max_length < 4096  # RULER's smaller repeats below 4K
    example, example_answer = _cwe_list(
        rng, res.words, 20 if short else 40, num_cw, *((3, 1) if short else (10, 3))
    )
    context, answer = _cwe_list(
        rng, res.words, num_cw + size, num_cw, *((6, 1) if short else (freq_cw, freq_ucw))
    )
    text = (
        CWE_TEMPLATE.format(context=example)
        + CWE_PREFIX
        + " "
        + _numbered(example_answer)
        + "\n"
        + CWE_TEMPLATE.format(context=context)
    )
    return text, CWE_PREFIX, answer


def _fwe(rng, size, res, *, alpha, max_length, index):
    vocab_size = max(max_length // 50, 10)
    vocab: set[str] = set()
    while len(vocab) < vocab_size:
        vocab.add("".join(rng.choices(string.ascii_lowercase, k=6)))
    coded = sorted(vocab)
    rng.shuffle(coded)
    coded[0] = "..."  # the most frequent "word" is noise, as in RULER
    weights = [k**-alpha for k in range(1, len(coded) + 1)]
    total = math.fsum(weights)
    text = [word for word, w in zip(coded, weights, strict=True) for _ in range(int(size * w / total))]
    rng.shuffle(text)
    return FWE_TEMPLATE.format(context=" ".join(text)), FWE_PREFIX, coded[1:4]


def _qa(rng, size, res, *, dataset, index):
    qa = res.qa
    if qa is None or qa.name != dataset:
        raise ValueError(f"The {dataset} QA task needs a {dataset} question file.")
    question = qa.questions[index % len(qa.questions)]
    chosen = list(question["gold"])
    extra = size - len(chosen)
    related = [d for d in question["related"] if d not in chosen]
    if extra > 0 and related:
        chosen += rng.sample(related, min(extra, len(related)))
        extra = size - len(chosen)
    if extra > 0:
        taken = set(chosen)
        others = [d for d in range(len(qa.docs)) if d not in taken]
        chosen += rng.sample(others, min(extra, len(others)))
    rng.shuffle(chosen)
    context = "\n\n".join(f"Document {i + 1}:\n{qa.docs[d]}" for i, d in enumerate(chosen))
    return QA_TEMPLATE.format(context=context, query=question["query"]), QA_PREFIX, list(question["answers"])


BUILDERS: dict[str, Callable] = {"niah": _niah, "vt": _vt, "cwe": _cwe, "fwe": _fwe, "qa": _qa}


def lm_eval_prompt(tokenizer, text: str, gen_prefix: str, chat_template: bool) -> str:
    """The prompt lm-eval sends for a sample (`doc_to_text` = `text`, `gen_prefix`), to count its tokens.

    lm-eval renders the prompt itself. Plain: the text and the prefix joined by the target delimiter " "
    (`maybe_delimit`). With `--apply_chat_template`: a user turn, then an assistant turn that starts with
    the prefix and is continued (`HFLM.apply_chat_template`). `tests/eval` checks both against the
    prompts lm-eval actually sends.
    """
    if not chat_template:
        from lm_eval.api.utils import maybe_delimit

        return maybe_delimit(text, gen_prefix)
    messages = [{"role": "user", "content": text}, {"role": "assistant", "content": gen_prefix}]
    return tokenizer.apply_chat_template(messages, tokenize=False, continue_final_message=True)


def count_tokens(tokenizer, prompt: str) -> int:
    """Length of `prompt` in the model's tokens (special tokens the tokenizer adds included)."""
    return len(tokenizer(prompt).input_ids)


def _size_limit(kind: str, res: Resources) -> int:
    if kind == "qa":
        return len(res.qa.docs)
    if kind == "cwe":
        return len(res.words) - 10
    if kind == "niah" or kind == "vt":
        return len(res.essay)
    return 10**9


def generate_samples(
    task: str,
    tokenizer,
    length: int,
    num_samples: int,
    *,
    seed: int = DEFAULT_SEED,
    resources: Resources | None = None,
    chat_template: bool = False,
    depth: int | None = None,
) -> list[dict]:
    """`num_samples` samples of `task` whose prompt plus the tokens to generate fit `length` model tokens.

    Args:
        task: one of `TASK_NAMES`.
        tokenizer: the evaluated model's tokenizer (lengths are counted in its tokens).
        length: target context length in tokens (prompt + generation budget).
        num_samples: samples to generate.
        seed: base seed; sample `i` depends only on (seed, task, length, i).
        resources: haystack corpus and QA set (`Resources()` = the embedded corpus, no QA).
        chat_template: count the prompt as lm-eval renders it with `--apply_chat_template`.
        depth: for single-needle essay tasks, put the needle at this depth (percent) instead of a random one.

    Returns:
        dicts with `task`, `index`, `input` (the task text), `gen_prefix` (RULER's answer prefix, which
        lm-eval appends), `outputs` (expected strings), `length` (prompt tokens + generation budget),
        `max_length`, `metric` and `depth`.
    """
    if task not in TASKS:
        raise ValueError(f"Unknown RULER task {task!r}; known: {', '.join(TASK_NAMES)}.")
    kind, args = TASKS[task]
    resources = resources or Resources()
    args = dict(args)
    if kind in ("cwe", "fwe"):
        args["max_length"] = length
    if depth is not None:
        if kind != "niah" or args["haystack"] != "essay":
            raise ValueError(f"A fixed needle depth applies to essay-haystack NIAH tasks, not {task}.")
        args["depth"] = depth
    budget = tokens_to_generate(task)
    builder = BUILDERS[kind]

    def fits(index: int, size: int) -> tuple[bool, dict]:
        rng = random.Random(f"{seed}/{task}/{length}/{index}")
        text, prefix, outputs = builder(rng, size, resources, index=index, **args)
        gen_prefix = prefix.lstrip()  # lm-eval puts the target delimiter " " before it
        used = count_tokens(tokenizer, lm_eval_prompt(tokenizer, text, gen_prefix, chat_template)) + budget
        return used <= length, {"input": text, "gen_prefix": gen_prefix, "outputs": outputs, "length": used}

    ok, smallest = fits(0, 1)
    if not ok:
        raise ValueError(
            f"Length {length} is too short for {task}: its smallest prompt plus {budget} generated tokens "
            f"takes {smallest['length']} tokens."
        )
    limit = _size_limit(kind, resources)
    low, high = 1, 2
    while high <= limit and fits(0, high)[0]:
        low, high = high, high * 2
    high = min(high, limit + 1)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if fits(0, middle)[0] else (low, middle)

    samples = []
    for index in range(num_samples):
        size = low
        ok, sample = fits(index, size)
        while not ok and size > 1:
            size = max(1, size - max(1, size // 50))
            ok, sample = fits(index, size)
        if not ok:
            raise ValueError(
                f"Could not fit sample {index} of {task} into {length} tokens ({sample['length']} needed)."
            )
        samples.append(
            {
                "task": task,
                "index": index,
                **sample,
                "max_length": length,
                "metric": metric_for(task),
                "depth": depth,
            }
        )
    return samples
