"""The corpus index (`corpus_index`: embed, build, merge on disk, load, search) and what may never be retrieved
for a root (`exclusion`: the root itself and its near-copies)."""
