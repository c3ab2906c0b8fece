"""The RULER path scored on a model that answers: a scripted reader that finds the needles in the prompt.

A random tiny model scores 0 everywhere, so a scorer that returns 0 would pass every test run on it. The reader
below answers the NIAH questions by reading the needles lm-eval puts in its prompt, so the same tasks, prompts and
scorer must give it full marks (and a reader that answers nothing must get 0).
"""

import re

import pytest
from lm_eval.api.model import LM

from hf_entropylong.eval.runner import run_tasks
from hf_entropylong.eval.task_files import task_name
from hf_entropylong.models import EMBEDDED_LM

NEEDLE = re.compile(r"special magic (\w+) for (.+?) is:? ([\w-]+)")
QUESTION = re.compile(
    r"(?:What (?:are all|is) the special magic \w+ for) (.+?) mentioned in the provided text"
)


class ScriptedReader(LM):
    """Answers each question with the values of the needles whose key it asks for (or nothing, when `silent`)."""

    def __init__(self, silent: bool = False):
        super().__init__()
        self.silent = silent

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        answers = []
        for request in requests:
            context = request.args[0]
            asked = QUESTION.findall(context)[-1]
            values = [value for _, key, value in NEEDLE.findall(context) if key == asked]
            answers.append("" if self.silent else ", ".join(values))
        return answers

    def loglikelihood(self, requests):
        raise NotImplementedError

    def loglikelihood_rolling(self, requests):
        raise NotImplementedError


@pytest.mark.parametrize("silent, expected", [(False, 1.0), (True, 0.0)], ids=["reader", "silent"])
def test_a_model_that_reads_the_needles_scores_full_marks(silent, expected):
    tasks = [task_name(task) for task in ("niah_single_1", "niah_multikey_1", "niah_multivalue")]
    metadata = {"tokenizer": EMBEDDED_LM, "max_seq_lengths": [1024], "num_samples": 3, "seed": 1}
    rows = run_tasks(ScriptedReader(silent), tasks, metadata)
    assert len(rows) == 9 and {row["task"] for row in rows} == {
        "niah_single_1",
        "niah_multikey_1",
        "niah_multivalue",
    }
    assert [row["score"] for row in rows] == [expected] * 9
