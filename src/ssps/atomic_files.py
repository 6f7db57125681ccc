"""Writing result files atomically, with the permissions of any other output.

The data goes to a hidden temporary file in the target's folder, is flushed to disk and
renamed over the target: a reader sees the old file or the new one, never a part. The
temporary file is created private (as `tempfile.mkstemp` does) and given the usual
permissions (0666 less the umask) before the rename, so a JSON result is not 0600 beside
0644 plots. A failed write removes the temporary file and raises OSError naming the path.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
            os.fchmod(stream.fileno(), 0o666 & ~current_umask())
        os.replace(temporary, path)
    except OSError as err:
        Path(temporary).unlink(missing_ok=True)
        raise OSError(f"{path}: cannot write ({err.strerror or err})") from None
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | Path, data: Any, indent: int = 2) -> Path:
    return write_text_atomic(path, json.dumps(data, indent=indent) + "\n")
