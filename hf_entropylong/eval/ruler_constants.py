"""RULER's task constants (NVIDIA/RULER, commit c3f5e3b), in one place for the generators and the task files.

From `scripts/synthetic.yaml` (the 13 tasks' settings), `scripts/data/synthetic/constants.py` (templates,
answer prefixes, generation budgets) and the generators under `scripts/data/synthetic/` (needle depths,
the vt example's budget). `STANDARD_LENGTHS` are the lengths RULER reports (4K to 128K); `PAPER_WINDOW` the ones the
EntropyLong paper averages (8K to 128K: its 87.37 is their mean). An average is "the RULER average" only over the 13
tasks on the essay haystack at exactly the paper's window (see `ruler.average_label`)."""

from __future__ import annotations

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
DEFAULT_SAMPLES = 500  # RULER's samples per task and length
VT_EXAMPLE_TOKENS = 500  # RULER's budget for vt's in-context example
DEFAULT_LENGTHS = (4096,)  # lm-eval's RULER default
HEATMAP_TASK = "niah_single_2"  # the needle-in-a-haystack grid: one needle in the essay haystack
HEATMAP_DEPTHS = (0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100)
STANDARD_LENGTHS = (4096, 8192, 16384, 32768, 65536, 131072)  # the lengths RULER reports
PAPER_WINDOW = (8192, 16384, 32768, 65536, 131072)  # the lengths the EntropyLong paper's RULER average covers


def metric_for(task: str) -> str:
    """RULER's metric of `task`: `part` for QA, `all` otherwise."""
    return "part" if TASKS[task][0] == "qa" else "all"


def tokens_to_generate(task: str) -> int:
    """RULER's generation budget of `task` in tokens (counted in its length, set in its lm-eval task)."""
    return TOKENS_TO_GENERATE[TASKS[task][0]]
