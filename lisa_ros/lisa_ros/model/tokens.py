"""The ids of LISA's added tokens in a checkpoint's vocabulary.

Its own module, free of torch and of the other model modules, so that the prompt code, the
checkpoint reader and the model all read it without importing one another.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TokenLayout:
    """Ids of LISA's added tokens, which differ between releases (7B vs 13B-llama2)."""

    seg: int
    im_start: int
    im_end: int
    im_patch: int | None
    bos: int
    eos: int

    @property
    def added(self) -> tuple[int, ...]:
        """Ids that are decoded as standalone words, like LLaMA's slow tokenizer did."""
        return tuple(
            i for i in (self.seg, self.im_start, self.im_end, self.im_patch) if i is not None
        )
