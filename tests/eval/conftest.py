"""Fixtures for the evaluation tests: the embedded tokenizer, a tiny random Llama, small data files."""

import json

import pytest
from tiny_models import tiny_llama

from hf_entropylong.models import EMBEDDED_LM, load_tokenizer


@pytest.fixture(scope="session")
def tokenizer():
    return load_tokenizer(EMBEDDED_LM)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tokenizer):
    """A 2-layer random Llama with the embedded tokenizer and a 4,096-token window, saved to disk."""
    path = tmp_path_factory.mktemp("tiny-llama")
    model = tiny_llama(
        vocab_size=len(tokenizer),
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


SQUAD = {
    "version": "v2.0",
    "data": [
        {
            "title": "Rivers",
            "paragraphs": [
                {
                    "context": "The Danube flows through ten countries and ends in the Black Sea.",
                    "qas": [
                        {
                            "id": "1",
                            "question": "Where does the Danube end?",
                            "is_impossible": False,
                            "answers": [
                                {"text": "the Black Sea", "answer_start": 52},
                                {"text": "Black Sea", "answer_start": 56},
                            ],
                        },
                        {"id": "2", "question": "Who owns the Danube?", "is_impossible": True, "answers": []},
                    ],
                },
                {"context": "The Rhine rises in the Swiss Alps.", "qas": []},
            ],
        },
        {
            "title": "Mountains",
            "paragraphs": [
                {
                    "context": "Mount Kilimanjaro is the highest mountain in Africa.",
                    "qas": [
                        {
                            "id": "3",
                            "question": "What is the highest mountain in Africa?",
                            "is_impossible": False,
                            "answers": [{"text": "Mount Kilimanjaro", "answer_start": 0}],
                        }
                    ],
                },
            ]
            + [
                {"context": f"Filler paragraph number {i} about hills and valleys.", "qas": []}
                for i in range(40)
            ],
        },
    ],
}

HOTPOT = [
    {
        "_id": "a",
        "question": "Which river in the country of Vienna flows to the Black Sea?",
        "answer": "Danube",
        "context": [
            ["Vienna", ["Vienna is the capital of Austria."]],
            ["Danube", ["The Danube flows to the Black Sea."]],
        ],
    },
    {
        "_id": "b",
        "question": "Is Lyon in France?",
        "answer": "yes",
        "context": [["Lyon", ["Lyon is a city in France."]], ["Paris", ["Paris is the capital."]]],
    },
]


@pytest.fixture
def squad_file(tmp_path):
    path = tmp_path / "squad.json"
    path.write_text(json.dumps(SQUAD))
    return str(path)


@pytest.fixture
def hotpotqa_file(tmp_path):
    path = tmp_path / "hotpot.json"
    path.write_text(json.dumps(HOTPOT))
    return str(path)
