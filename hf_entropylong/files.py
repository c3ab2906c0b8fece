"""Files the tool writes: under a temporary name, then renamed; caches with a checksum recorded beside them.

Writing. `write_text` writes `<name>.<random>.partial` in the target's folder and renames it over the target
(`os.replace`, atomic on POSIX): a reader, or a build killed half-way (a full disk, SIGKILL), sees the old file or
the new one, never a truncated one. The leftover `.partial` of a killed write is never read.

Checking. A cache file (a stage shard or an embedding shard written by `Dataset.map(cache_file_name=...)`, the
FAISS index) gets its SHA-256 recorded beside it when written, as `<file>.sha256` in `sha256sum` format
(`sha256sum -c` checks it too). `cache_is_sound` checks a cache file against its record before it is trusted: one
that fails (a flipped byte, a truncation, or no record at all) is named in a warning and renamed aside to
`<file>.corrupt-<time>` (never deleted), so the caller computes it again. A file checked once is not hashed again
by the same process while its size and modification time stay the same.

`file_digest` hashes a file once and keeps its digest in `<HF_ENTROPYLONG_CACHE>/file-digests/`, keyed by the
file's path, size, modification and change times and inode: a later run reuses it unless the file changed.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import secrets
import shutil
import time
from pathlib import Path

logger = logging.getLogger(__name__)

CHECKSUM_SUFFIX = ".sha256"
FULL_DISK_BYTES = 1 << 20  # a write that fails with less free space than this is reported as a full disk
_checked: dict[str, tuple[int, int]] = {}  # path -> (size, mtime_ns) of the files this process found sound


def write_text(path: Path, text: str) -> None:
    """Write `text` (UTF-8) to `path` under a temporary name in its folder, then rename it into place."""
    write_bytes(path, text.encode("utf-8"))


def write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` under a temporary name in its folder, then rename it into place."""
    path = Path(path)
    partial = path.with_name(f"{path.name}.{secrets.token_hex(4)}.partial")
    try:
        with partial.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)
    except OSError as error:
        if error.filename is None:  # a full disk says where only through us
            raise OSError(error.errno, error.strerror, str(path)) from error
        raise
    finally:
        partial.unlink(missing_ok=True)


def sha256_of(path: Path, chunk_bytes: int = 1 << 24) -> str:
    """The SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def _stamp(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


def record_checksum(path: Path) -> None:
    """Record the SHA-256 of `path` beside it (`<path>.sha256`)."""
    path = Path(path)
    write_text(path.with_name(path.name + CHECKSUM_SUFFIX), f"{sha256_of(path)}  {path.name}\n")
    _checked[str(path)] = _stamp(path)


def set_aside(path: Path, reason: str) -> Path:
    """Rename `path` (and its checksum record) to `<path>.corrupt-<time>` with a warning naming it and `reason`."""
    path = Path(path)
    aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}")
    path.rename(aside)
    record = path.with_name(path.name + CHECKSUM_SUFFIX)
    if record.exists():
        record.rename(aside.with_name(aside.name + CHECKSUM_SUFFIX))
    _checked.pop(str(path), None)
    logger.warning("%s %s: set aside as %s and computed again.", path, reason, aside.name)
    return aside


def cache_is_sound(path: Path) -> bool:
    """Whether the cache file `path` exists and matches its recorded checksum.

    A file that does not match, or has no record, is set aside (`set_aside`) and False is returned: the caller then
    writes it again (and records its checksum with `record_checksum`).
    """
    path = Path(path)
    if not path.exists():
        return False
    if _checked.get(str(path)) == _stamp(path):
        return True
    record = path.with_name(path.name + CHECKSUM_SUFFIX)
    try:
        expected = record.read_text(encoding="utf-8").split()[0]
    except (OSError, IndexError, UnicodeDecodeError):
        set_aside(path, f"has no readable checksum record ({record.name})")
        return False
    if sha256_of(path) != expected:
        set_aside(path, f"does not match its checksum ({record.name}): the file is damaged")
        return False
    _checked[str(path)] = _stamp(path)
    return True


def cached_map(rows, cache_file_name: Path, **map_kwargs):
    """`rows.map(...)` cached in `cache_file_name`, a cache that is checked before it is read and recorded once written.

    A cache that fails its check is set aside and computed again (see `cache_is_sound`).

    Returns:
        The mapped dataset, and whether it was computed (False: read back from a sound cache).
    """
    sound = cache_is_sound(cache_file_name)
    try:
        result = rows.map(cache_file_name=str(cache_file_name), **map_kwargs)
    except (OSError, ValueError) as error:  # pyarrow reports a full disk as a closed file, naming none
        free = shutil.disk_usage(Path(cache_file_name).parent).free
        if free < FULL_DISK_BYTES:
            raise OSError(
                errno.ENOSPC, f"the disk is full ({free:,} bytes free)", str(cache_file_name)
            ) from error
        raise
    if not sound and Path(cache_file_name).exists():  # `datasets` writes no file for an empty table
        record_checksum(cache_file_name)
    return result, not sound


def user_cache_dir() -> Path:
    """The tool's folder of the user's own (`$HF_ENTROPYLONG_CACHE`, default `~/.cache/hf_entropylong`)."""
    return Path(os.environ.get("HF_ENTROPYLONG_CACHE", Path.home() / ".cache" / "hf_entropylong"))


def file_digest(path: Path) -> str:
    """The SHA-256 of the file `path`, hashed once and reused while the file stays as it was (module docstring)."""
    path = Path(path).resolve()
    stat = path.stat()
    key = {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    key.update(ctime_ns=stat.st_ctime_ns, inode=stat.st_ino)
    store = user_cache_dir() / "file-digests" / f"{hashlib.sha256(str(path).encode()).hexdigest()[:32]}.json"
    try:
        known = json.loads(store.read_text(encoding="utf-8"))
        if {name: known.get(name) for name in key} == key:
            return known["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        pass  # not hashed yet, or a record that cannot be read: hash again
    digest = sha256_of(path)
    try:
        store.parent.mkdir(parents=True, exist_ok=True)
        write_text(store, json.dumps({**key, "sha256": digest}) + "\n")
    except OSError as error:  # a read-only cache folder: the digest is still right, only recomputed next time
        logger.warning("could not record the digest of %s in %s: %s", path, store, error)
    return digest
