"""`resume_from_checkpoint: true` (as a flag or in YAML) resumes from the newest checkpoint, as Trainer users expect."""

from types import SimpleNamespace

import pytest

from hf_entropylong.train import run


class Asked(Exception):
    """What the trainer was asked to resume from."""


class RecordingTrainer:
    def __init__(self, resume):
        self.args = SimpleNamespace(resume_from_checkpoint=resume)

    def train(self, resume_from_checkpoint=None):
        raise Asked(resume_from_checkpoint)


@pytest.mark.parametrize(
    "given, expected",
    [
        ("true", True),
        ("True", True),
        ("false", False),
        (None, None),
        ("out/checkpoint-4", "out/checkpoint-4"),
    ],
)
def test_resume_from_checkpoint_true_means_the_newest_checkpoint(given, expected):
    with pytest.raises(Asked) as asked:
        run.train_and_save(RecordingTrainer(given))
    assert asked.value.args[0] == expected  # True: Trainer takes the newest checkpoint-* of output_dir
