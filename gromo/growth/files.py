"""Files of a run written atomically with the umask's mode: readers only ever see a complete file.

Each write goes to a temporary file in the target's directory that then replaces the target with
``os.replace`` (atomic on POSIX and Windows), so a crash, a kill or a full disk between two writes
leaves the previous version in place. ``tempfile.mkstemp`` creates files 0600; the temporary file
is given the mode ``open(path, "w")`` would have given under the process's umask.
"""

from __future__ import annotations

import os
import tempfile


def file_mode() -> int:
    """Mode a new file gets under the process's umask (what ``open(path, "w")`` would give)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def replace_atomically(path: str, write, *, durable: bool = False) -> None:
    """Call ``write(stream)`` on a temporary file next to ``path``, then rename it over ``path``.

    ``write`` receives a binary stream; ``durable`` also fsyncs the data before the rename
    (survives a power loss, costs ~10-20 ms).

    Raises:
        OSError: the directory is not writable or the disk is full (no partial file is left).
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, tmp_path = tempfile.mkstemp(prefix=f".{os.path.basename(path)}-", suffix=".tmp", dir=directory)
    try:
        if hasattr(os, "fchmod"):  # POSIX; elsewhere mkstemp's mode already follows the platform
            os.fchmod(handle, file_mode())
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            if durable:
                os.fsync(stream.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.unlink(tmp_path)
        raise
