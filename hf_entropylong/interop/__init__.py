"""Interoperability with the trainers and datasets the field already has.

- `hf-entropylong export SRC OUT --format mds` (`mds.py`): packed rows as mosaicml-streaming MDS shards with
  `input_ids` and `indices`, the fields the EntropyLong authors' ProLong-derived trainer reads
  (`--tokenized_mds_train OUT`).
- `hf-entropylong import SRC OUT` (`importer.py`): a tokenized MDS or Hugging Face dataset with document boundaries,
  or a text dataset, into this package's published layout, so `report`, the viewer and the trainer's unit-masked
  attention read it.
- `hf-entropylong retokenize SRC OUT --tokenizer NAME --max_seq_length N` (`retokenize.py`): a published build's
  units and dependencies re-tokenized for another model's tokenizer and re-packed, with every dependency position
  mapped through the new tokenizer.

`folders.py` holds what the three share: reading a packed source and writing an output folder whole or not at all.
"""
