"""What "readable by others" means in the tests: every file written has the mode a plain
``open(path, "w")`` gives under the current umask (0644 under the usual 022), not mkstemp's 0600."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def umask_mode() -> int:
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def files_with_other_modes(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` whose permission bits differ from :func:`umask_mode`."""
    expected = umask_mode()
    return {
        str(path.relative_to(folder)): oct(stat.S_IMODE(path.stat().st_mode))
        for path in sorted(folder.rglob("*"))
        if path.is_file() and stat.S_IMODE(path.stat().st_mode) != expected
    }


@contextmanager
def umask(value: int) -> Iterator[None]:
    previous = os.umask(value)
    try:
        yield
    finally:
        os.umask(previous)
