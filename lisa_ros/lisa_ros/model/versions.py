"""The oldest torch and transformers the core works with, checked before a load.

- transformers < 5.24 loads LISA's SentencePiece tokenizer so that the prompt's first word loses its
  leading "▁": other token ids than the reference's, hence other masks, and no error anywhere
  (checked with 5.0, 5.17, 5.20, 5.22 and 5.23 on the test fixture; 5.24 matches the reference).
- transformers 5.24 itself needs torch >= 2.6 (and `segment` catches `torch.OutOfMemoryError`, which
  older torch lacks: every error there would have become an AttributeError).

Both are refused at load with what to install. Keep these in step with `install_requires` in
setup.py.
"""

from __future__ import annotations

import re

from .errors import LisaLoadError

MIN_TORCH = (2, 6)
MIN_TRANSFORMERS = (5, 24)


def _release(version: str) -> tuple[int, ...]:
    """(2, 5, 1) from '2.5.1+cu121', '2.6.0a0+git1234', '5.20.0.dev0'."""
    match = re.match(r"\d+(?:\.\d+)*", version)
    return tuple(int(part) for part in match.group(0).split(".")) if match else ()


def _text(version: tuple[int, ...]) -> str:
    return ".".join(str(part) for part in version)


def check_versions(
    torch_version: str | None = None, transformers_version: str | None = None
) -> None:
    """LisaLoadError naming what to upgrade if torch or transformers is older than supported."""
    if torch_version is None:
        import torch

        torch_version = torch.__version__
    if transformers_version is None:
        import transformers

        transformers_version = transformers.__version__
    for name, found, floor in (
        ("torch", torch_version, MIN_TORCH),
        ("transformers", transformers_version, MIN_TRANSFORMERS),
    ):
        if _release(found)[: len(floor)] < floor:
            raise LisaLoadError(
                f"{name} {found} is too old: lisa_ros needs {name} >= {_text(floor)} "
                f"(pip install -U '{name}>={_text(floor)}')"
            )
