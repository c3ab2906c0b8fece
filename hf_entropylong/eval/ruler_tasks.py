"""The 13 RULER tasks, generated offline and sized in the evaluated model's tokens.

Each task follows RULER v1 as NVIDIA/RULER defines it at commit c3f5e3b: the settings of
`scripts/synthetic.yaml`, the templates and answer prefixes of `scripts/data/synthetic/constants.py` and
the generators of `scripts/data/synthetic/*.py` (see `ruler.py`). A sample is the task text (`input`,
holding the haystack) and RULER's answer prefix (`gen_prefix`); lm-eval joins them (after the chat
template's assistant header with `--apply_chat_template`) and the model continues greedily.

| task | haystack | needles |
|---|---|---|
| niah_single_1 | noise | 1 key (adjective-noun) → 1 value (7-digit number) |
| niah_single_2 | essay | 1 key → 1 number |
| niah_single_3 | essay | 1 key → 1 UUID |
| niah_multikey_1 | essay | 4 keys, 1 asked |
| niah_multikey_2 | needle (distractor needles) | 1 key → number |
| niah_multikey_3 | needle | 1 key (UUID) → UUID |
| niah_multivalue | essay | 1 key → 4 numbers, all asked |
| niah_multiquery | essay | 4 keys, all 4 asked |
| vt | noise | 1 chain of 4 hops, each statement on its own line; one example of ≤ 500 tokens first |
| cwe | numbered word list | 10 common words (30×, or 6× under 4K) among words seen 3× (1×); one example |
| fwe | Zipf(α=2) coded words, (L − 50) // 50 of them | the 3 most frequent |
| qa_1 / qa_2 | SQuAD / HotpotQA paragraphs | gold paragraphs among distractors |

As in RULER: keys and the cwe pool come from `wonderwords` (`haystack.key_words`, `haystack.common_words`);
needles go at distinct lines of a noise or needle haystack, never after the last line, and at distinct
depths (RULER's 40) of an essay haystack; some lists are shuffled by one fixed `random.Random(seed)`
rather than the sample's generator, so a permutation depends only on the list's length: NIAH's needles,
cwe's word lists, fwe's vocabulary and words, and QA's documents (the gold document of SQuAD sits at the
same slot in every sample with the same number of documents, i.e. per length).

**Length accounting.** A sample for length L is the largest haystack with
`tokens(prompt) + tokens_to_generate ≤ L`, where `tokens` is the evaluated model's tokenizer applied to
the exact prompt lm-eval will send (`lm_eval_prompt`, chat template included). The haystack size is found
by a doubling then binary search on a probe sample; every sample then shrinks its own haystack (by 2%
steps) until it fits, since random needles and keys change the token count slightly. RULER searches the
same way with its own step sizes. Scoring is RULER's: `all` (share of the expected strings found) for
NIAH/VT/CWE/FWE and `part` (any of them) for QA.

**Determinism.** Sample `i` of task `t` at length `L` draws from `random.Random(f"{seed}/{t}/{L}/{i}")`
(and the fixed shuffles above), so a sample never depends on which other tasks, lengths or samples were
asked for. RULER draws every sample from one generator in sequence; the distributions are the same, the
individual samples are not.

Other differences from RULER: distractor needles never reuse the asked key (RULER does not check; a
collision is one in millions); beyond wonderwords' 8,166 words cwe draws from RULER's English word list when
it is given (`--cwe_words`), else from the haystack's vocabulary; QA questions cycle when a file has fewer than
the samples asked.
"""

from __future__ import annotations

import random
import string
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from ..models import EMBEDDED_CORPUS
from .chat import chat_prompt
from .haystack import NOISE, QASet, common_words, essay_words, extra_words, key_words, split_sentences
from .ruler_constants import (
    CWE_PREFIX,
    CWE_TEMPLATE,
    DEFAULT_SEED,
    DEPTHS,
    FWE_PREFIX,
    FWE_TEMPLATE,
    NEEDLE,
    NIAH_PREFIX,
    NIAH_TEMPLATE,
    QA_PREFIX,
    QA_TEMPLATE,
    TASK_NAMES,
    TASKS,
    TOKENS_TO_GENERATE,
    VT_EXAMPLE_TOKENS,
    VT_PREFIX,
    VT_TEMPLATE,
    metric_for,
    tokens_to_generate,
)


@dataclass
class Resources:
    """What the builders draw from: the essay haystack (embedded name or file) and (for QA) the question set."""

    haystack: str = EMBEDDED_CORPUS
    qa: QASet | None = None
    cwe_words: str | None = None  # RULER's English word list (a file); None: the haystack's vocabulary

    @property
    def essay(self) -> tuple[str, ...]:
        return essay_words(self.haystack)

    @property
    def fallback_words(self) -> tuple[str, ...]:
        return extra_words(self.haystack, self.cwe_words)


def word_key(rng: random.Random) -> str:
    """An adjective-noun key, uniform over wonderwords' pairs (RULER: `random.choice` of the sorted pairs)."""
    adjectives, nouns = key_words()
    pick = rng.randrange(len(adjectives) * len(nouns))
    return f"{adjectives[pick // len(nouns)]}-{nouns[pick % len(nouns)]}"


def _random_value(rng: random.Random, kind: str) -> str:
    if kind == "numbers":
        return str(rng.randint(1_000_000, 9_999_999))
    if kind == "uuids":
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))
    return word_key(rng)


def repeat_words(words: tuple[str, ...], size: int) -> tuple[str, ...]:
    """The first `size` words of the stream, repeated when it is shorter (as RULER does)."""
    return (words * (size // len(words) + 1))[:size] if size > len(words) else words[:size]


def _niah(rng, size, res, *, seed, haystack, key, value, num_k=1, num_v=1, num_q=1, depth=None, index):
    num_k = max(num_k, num_q)
    keys, values, needles = [], [], []
    for _ in range(num_k):
        keys.append(_random_value(rng, key))
        values.append([_random_value(rng, value) for _ in range(num_v)])
        needles += [NEEDLE.format(type_needle_v=value, key=keys[-1], value=v) for v in values[-1]]
    random.Random(seed).shuffle(needles)
    if haystack == "essay":
        sentences = split_sentences(" ".join(repeat_words(res.essay, size)))
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
                distractor = _random_value(rng, key)
                if distractor not in taken:
                    lines.append(
                        NEEDLE.format(type_needle_v=value, key=distractor, value=_random_value(rng, value))
                    )
        # distinct lines, each needle before an existing line (never after the last one)
        for position, needle in zip(
            sorted(rng.sample(range(size), len(needles)), reverse=True), needles, strict=True
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
    """RULER c3f5e3b's noise layout: noise lines and chain statements, each its own line."""
    names: list[str] = []
    while len(names) < num_hops + 1:
        name = "".join(rng.choices(string.ascii_uppercase, k=name_len))
        if name not in names:
            names.append(name)
    value = rng.randrange(10000, 99999)  # numpy's randint(10000, 99999): the upper bound excluded
    chain = [f"VAR {names[0]} = {value}"] + [f"VAR {names[j + 1]} = VAR {names[j]} " for j in range(num_hops)]
    lines = [NOISE] * num_noises
    for offset, position in enumerate(sorted(rng.sample(range(num_noises), len(chain)))):
        lines.insert(position + offset, chain[offset])
    text = VT_TEMPLATE.format(context="\n".join(lines), query=value)
    return text, VT_PREFIX.format(num_v=num_hops + 1, query=value), names


def _vt(rng, size, res, *, seed, num_hops, example_noises, index):
    example, example_prefix, example_names = _vt_text(rng, example_noises, num_hops, 3)
    text, prefix, names = _vt_text(rng, size, num_hops, 5)
    # RULER: the example's input (prefix included), " ", its answer, "\n", then "\n" before the task
    return example + example_prefix + " " + " ".join(example_names) + "\n\n" + text, prefix, names


def _numbered(words):
    return " ".join(f"{i + 1}. {word}" for i, word in enumerate(words))


@lru_cache(maxsize=4)
def _cwe_pool(seed: int) -> tuple[str, ...]:
    pool = list(common_words())
    random.Random(seed).shuffle(pool)
    return tuple(pool)


def _cwe_list(rng, seed, res, num_words, num_cw, freq_cw, freq_ucw):
    pool = _cwe_pool(seed)
    chosen = rng.sample(pool if num_words <= len(pool) else res.fallback_words, num_words)
    common, uncommon = chosen[:num_cw], chosen[num_cw:]
    listed = common * freq_cw + uncommon * freq_ucw
    random.Random(seed).shuffle(listed)
    return _numbered(listed), common


def _cwe(rng, size, res, *, seed, freq_cw, freq_ucw, num_cw, max_length, index):
    short = max_length < 4096  # RULER's smaller repeats below 4K
    example, example_answer = _cwe_list(
        rng, seed, res, 20 if short else 40, num_cw, *((3, 1) if short else (10, 3))
    )
    context, answer = _cwe_list(
        rng, seed, res, num_cw + size, num_cw, *((6, 1) if short else (freq_cw, freq_ucw))
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


def _fwe(rng, size, res, *, seed, alpha, max_length, index):
    from scipy.special import zeta

    vocab_size = (max_length - TOKENS_TO_GENERATE["fwe"]) // 50
    if vocab_size < 4:
        raise ValueError(
            f"Length {max_length} is too short for fwe: RULER's (L - 50) // 50 coded words need L >= 250."
        )
    vocab: set[str] = set()
    while len(vocab) < vocab_size:
        vocab.add("".join(rng.choices(string.ascii_lowercase, k=6)))
    coded = sorted(vocab)
    random.Random(seed).shuffle(coded)
    coded[0] = "..."  # the most frequent "word" is noise, as in RULER
    norm = zeta(alpha)
    text = [word for k, word in enumerate(coded, 1) for _ in range(int(size * k**-alpha / norm))]
    random.Random(seed).shuffle(text)
    return FWE_TEMPLATE.format(context=" ".join(text)), FWE_PREFIX, coded[1:4]


def _qa(rng, size, res, *, seed, dataset, index):
    qa = res.qa
    if qa is None or qa.name != dataset:
        raise ValueError(f"The {dataset} QA task needs a {dataset} question file.")
    question = qa.questions[index % len(qa.questions)]
    gold = list(question["gold"])
    related = [d for d in question["related"] if d not in gold]
    extra = size - len(gold)
    if extra <= len(related):
        chosen = gold + rng.sample(related, max(extra, 0))
    else:
        taken = set(gold + related)
        others = [d for d in range(len(qa.docs)) if d not in taken]
        chosen = gold + related + rng.sample(others, min(extra - len(related), len(others)))
    random.Random(seed).shuffle(chosen)  # RULER's fixed shuffle: the gold slot depends on the count only
    context = "\n\n".join(f"Document {i + 1}:\n{qa.docs[d]}" for i, d in enumerate(chosen))
    return QA_TEMPLATE.format(context=context, query=question["query"]), QA_PREFIX, list(question["answers"])


BUILDERS: dict[str, Callable] = {"niah": _niah, "vt": _vt, "cwe": _cwe, "fwe": _fwe, "qa": _qa}


def lm_eval_prompt(tokenizer, text: str, gen_prefix: str, chat_template: bool) -> str:
    """The prompt lm-eval sends for a sample (`doc_to_text` = `text`, `gen_prefix`), to count its tokens.

    lm-eval renders the prompt itself. Plain: the text and the prefix joined by the target delimiter " "
    (`maybe_delimit`). With `--apply_chat_template`: a user turn, then an assistant turn that starts with
    the prefix and is continued, without the template's default system prompt (`chat.chat_prompt`, which
    `eval ruler --chat_template` installs in lm-eval's `HFLM`). `tests/eval` checks both against the
    prompts lm-eval actually sends.
    """
    if not chat_template:
        from lm_eval.api.utils import maybe_delimit

        return maybe_delimit(text, gen_prefix)
    messages = [{"role": "user", "content": text}, {"role": "assistant", "content": gen_prefix}]
    return chat_prompt(tokenizer, messages)


def count_tokens(tokenizer, prompt: str) -> int:
    """Length of `prompt` in the model's tokens (special tokens the tokenizer adds included)."""
    return len(tokenizer(prompt).input_ids)


def _size_limit(kind: str, res: Resources) -> int:
    if kind == "qa":
        return len(res.qa.docs)
    if kind == "cwe":
        return max(len(common_words()), len(res.fallback_words)) - TASKS["cwe"][1]["num_cw"]
    return 10**9  # essays repeat; noise, needles and coded words are generated


def largest_fitting(fits: Callable[[int], bool], low: int, limit: int) -> int:
    """The largest size in [low, limit] for which `fits` holds, given that it holds for `low`."""
    high = low * 2
    while high <= limit and fits(high):
        low, high = high, high * 2
    high = min(high, limit + 1)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low


def _vt_example_noises(tokenizer, seed: int, num_hops: int) -> int:
    """Noise lines of vt's example: as many as keep it (answer prefix included) within 500 tokens (RULER)."""
    rng = random.Random(f"{seed}/vt-example")

    def fits(size: int) -> bool:
        text, prefix, _ = _vt_text(rng, size, num_hops, 3)
        return count_tokens(tokenizer, text + prefix) <= VT_EXAMPLE_TOKENS

    return largest_fitting(fits, num_hops + 1, 10**9)


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
        resources: essay haystack and QA set (`Resources()` = the embedded Wikipedia haystack, no QA).
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
    if kind == "vt":
        args["example_noises"] = _vt_example_noises(tokenizer, seed, args["num_hops"])
    if depth is not None:
        if kind != "niah" or args["haystack"] != "essay":
            raise ValueError(f"A fixed needle depth applies to essay-haystack NIAH tasks, not {task}.")
        args["depth"] = depth
    budget = tokens_to_generate(task)
    builder = BUILDERS[kind]
    smallest = args.get("num_hops", 0) + 1  # vt's chain needs a line of its own per statement

    def build(index: int, size: int) -> dict:
        rng = random.Random(f"{seed}/{task}/{length}/{index}")
        text, prefix, outputs = builder(rng, size, resources, seed=seed, index=index, **args)
        gen_prefix = prefix.lstrip()  # lm-eval puts the target delimiter " " before it
        used = count_tokens(tokenizer, lm_eval_prompt(tokenizer, text, gen_prefix, chat_template)) + budget
        return {"input": text, "gen_prefix": gen_prefix, "outputs": outputs, "length": used}

    probe = build(0, smallest)
    if probe["length"] > length:
        raise ValueError(
            f"Length {length} is too short for {task}: its smallest prompt plus {budget} generated tokens "
            f"takes {probe['length']} tokens."
        )
    size = largest_fitting(
        lambda size: build(0, size)["length"] <= length, smallest, _size_limit(kind, resources)
    )
    samples = []
    for index in range(num_samples):
        used = size
        sample = build(index, used)
        while sample["length"] > length and used > smallest:
            used = max(smallest, used - max(1, used // 50))
            sample = build(index, used)
        if sample["length"] > length:
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
