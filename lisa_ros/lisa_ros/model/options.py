"""The options of `load_model` by name: precisions, quantizations, device names.

The one list of each, without torch: the ROS parameters, the `lisa-segment` arguments and
`load_model` all read them from here, so a new precision or quantization is added in one place and
the node can check what a person typed before the model stack (seconds of imports) is loaded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

__all__ = ["DEVICE_FORMS", "PRECISIONS", "QUANTIZATIONS", "device_problem", "spoken_choices"]

PRECISIONS: Mapping[str, str] = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
"""Precision name -> the name of its torch dtype (``getattr(torch, ...)``)."""

QUANTIZATIONS: tuple[str, ...] = ("int8", "nf4")
"""bitsandbytes quantizations of the LLM; ``None`` (the default) keeps it in ``precision``."""

DEVICE_FORMS: tuple[str, ...] = ("cpu", "cuda", "cuda:<index>")
"""The device names LISA is documented and tested with (``None``: CUDA when available)."""


def spoken_choices(choices: Iterable[str]) -> str:
    """``'a', 'b' or 'c'``: a list of accepted values as an error message says it."""
    quoted = [repr(choice) for choice in choices]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def device_problem(name: str, *, auto: str | None = None) -> str | None:
    """Why ``name`` is not one of :data:`DEVICE_FORMS`, or None when it is.

    A check of the text only: it imports nothing and asks no hardware, so a parameter can be
    refused as it is set; whether the GPU exists is for `load_model` to say. ``auto`` is the
    caller's spelling of "pick one" (the node's ``''``), accepted and listed with the others. The
    reason completes a sentence that starts with the name, e.g. ``device='gpu' {reason}``.
    """
    if name in ("cpu", "cuda") or (auto is not None and name == auto):
        return None
    if name.startswith("cuda:"):
        if name[len("cuda:") :].isdigit():
            return None
        return "has no GPU index: write cuda:<index>, e.g. cuda:0"
    accepted = DEVICE_FORMS if auto is None else (auto, *DEVICE_FORMS)
    return f"is not {spoken_choices(accepted)}"
