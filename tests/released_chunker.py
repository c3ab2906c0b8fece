"""NExtLong's released chunker (caskcsg/longcontext NExtLong/chunking.py), written from its description: the
reference the project's `methods.nextlong.meta_chunks` is checked against (tests and benchmarks/recipes_bench.py)."""


def released_group_segments(text: str, max_length: int) -> list[str]:
    """The released chunker's behaviour (NExtLong/chunking.py), written from its description: lines grouped while
    their summed length stays within the limit, a group closed only when it has length."""
    groups, group, length = [], [], 0
    for line in text.split("\n"):
        if length + len(line) > max_length:
            if length:
                groups.append("\n".join(group))
            group, length = [line], len(line)
        else:
            group.append(line)
            length += len(line)
    return [*groups, "\n".join(group)] if group else groups
