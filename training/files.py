"""Small files written atomically: a reader (or a run after a crash or a full disk) sees the old
file or the new one, never a partial one."""
from __future__ import annotations

import json
import os
import pathlib
import tempfile


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | pathlib.Path, data: bytes) -> pathlib.Path:
    """Write `data` to `path` through a temporary file in the same folder, fsync'ed, then renamed
    over `path` (rename is atomic on POSIX). On failure `path` is unchanged and no temporary file
    is left behind."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        pathlib.Path(temporary).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | pathlib.Path, text: str) -> pathlib.Path:
    return atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | pathlib.Path, record) -> pathlib.Path:
    return atomic_write_text(path, json.dumps(record, indent=2))
