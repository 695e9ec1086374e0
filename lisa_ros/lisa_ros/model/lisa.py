"""LISA inference: the predictor around `LisaNet`, with image caching, KV-cached generation with
[SEG] capture, and mask decoding.

The authors' code re-runs CLIP and the whole ~350-token sequence at every generated token and takes
the [SEG] states from a final full pass. Here the image is encoded once per image (and kept for
further instructions on it), generation uses the KV cache, and the state that predicted each token
is captured from the final norm as decoding goes: for a generated `[SEG]` at step j, it is the last
position of step j's forward pass, which is exactly the vector the reference selects.

Each [SEG] state becomes SAM's sparse prompt through `text_hidden_fcs`; the result keeps those
prompts, so `follow` can segment the same targets in a later frame with SAM alone (image encoder
and mask decoder), without CLIP or the LLM.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn
from transformers import StoppingCriteriaList

from . import host_memory
from .early_masks import DecodedMask, EarlyMasks, MaskCallback, stack_masks
from .errors import LisaOutOfMemoryError
from .generation import AnswerStreamer, OnToken, StopOnEvent, TextCallback
from .network import LisaNet
from .preprocessing import sam_input, validate_image
from .prompt import (
    Turn,
    build_prompt,
    decode_answer,
    seg_phrases,
    tokenize_prompt,
)
from .result import SegmentationResult
from .tokens import TokenLayout

logger = logging.getLogger(__name__)

DEFAULT_MAX_NEW_TOKENS = 512
StageCallback = Callable[[str], None]


@dataclass
class ImageEncoding:
    """Everything LISA computes from an image alone, reusable across instructions and turns.

    SAM's part is always there; CLIP's (`image_tokens`) is computed only when the LLM needs it,
    so `follow` encodes a frame for SAM alone and a later `segment` on that frame adds CLIP's.
    """

    key: str
    # (1, patches, hidden): projected CLIP features, in the LLM's input space; None until needed
    image_tokens: torch.Tensor | None
    sam_embeddings: torch.Tensor  # (1, C, h, w) float32: SAM image encoder output
    resize_hw: tuple[int, int]
    original_hw: tuple[int, int]
    # seconds each part took when it was computed ("clip", "sam_encoder")
    timings: dict[str, float]


def _image_key(image: np.ndarray) -> str:
    digest = hashlib.blake2b(np.ascontiguousarray(image).data, digest_size=16)
    digest.update(str(image.shape).encode())
    return digest.hexdigest()


class _Stopwatch:
    """Wall-clock stage timer; waits for the accelerator so a stage is charged what it costs."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()


class LisaModel:
    """A loaded LISA model, for inference: build it with `lisa_ros.model.load_model`; call
    `segment` (and `follow`).

    The predictor around the network (`net`, a `LisaNet`): the tokenizer and CLIP's processor,
    the last image's encodings, one inference at a time, and generation with [SEG] capture.
    """

    def __init__(
        self,
        *,
        net: LisaNet,
        clip_processor: Any,
        tokenizer: Any,
        layout: TokenLayout,
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        self.net = net
        self.clip_processor = clip_processor
        self.tokenizer = tokenizer
        self.layout = layout
        self.device = device
        self.dtype = dtype
        self._stopwatch = _Stopwatch(device)
        self._cached: ImageEncoding | None = None
        self._lock = threading.Lock()

    @property
    def max_context_tokens(self) -> int:
        return int(self.net.llm.config.max_position_embeddings)

    # ------------------------------------------------------------------ image
    def clip_pixels(self, image: np.ndarray) -> torch.Tensor:
        """CLIP's (1, 3, 224, 224) input: short side to 224, centre crop, OpenAI normalisation."""
        return self.clip_processor(images=image, return_tensors="pt")["pixel_values"]

    def sam_pixels(self, image: np.ndarray) -> tuple[torch.Tensor, tuple[int, int]]:
        """SAM's (1, 3, S, S) input (longest side to S, normalised, padded) and the (h, w) of the
        resized image in it."""
        return sam_input(image, self.net.sam_image_size)

    def encode_image(self, image: np.ndarray, *, clip: bool = True) -> ImageEncoding:
        """SAM's embedding and (with `clip`) CLIP tokens for the LLM, each computed once per
        distinct image: the last image's encoding is kept and completed as needed."""
        return self._encode_image(image, clip=clip)[0]

    @torch.inference_mode()
    def _encode_image(
        self, image: np.ndarray, *, clip: bool
    ) -> tuple[ImageEncoding, dict[str, float]]:
        """The encoding of `image`, and the seconds spent on it now: {"clip", "sam_encoder"},
        0 for a part reused from the cache (or not needed)."""
        validate_image(image)
        key = _image_key(image)
        clock = self._stopwatch
        spent = {"clip": 0.0, "sam_encoder": 0.0}
        encoding = self._cached if self._cached is not None and self._cached.key == key else None
        if encoding is None:
            start = clock.now()
            pixels, resize_hw = self.sam_pixels(image)
            sam_embeddings = self.net.sam_embedding(pixels)
            spent["sam_encoder"] = clock.now() - start
            encoding = ImageEncoding(
                key=key,
                image_tokens=None,
                sam_embeddings=sam_embeddings,
                resize_hw=resize_hw,
                original_hw=(image.shape[0], image.shape[1]),
                timings={"sam_encoder": spent["sam_encoder"]},
            )
            self._cached = encoding
        if clip and encoding.image_tokens is None:
            start = clock.now()
            encoding.image_tokens = self.net.image_tokens(self.clip_pixels(image))
            spent["clip"] = encoding.timings["clip"] = clock.now() - start
        return encoding, spent

    def clear_image_cache(self) -> None:
        """Forget the last image's encodings (to free memory, or to time a fresh encoding)."""
        self._cached = None

    def free_memory(self) -> None:
        """Drop the cached image encodings and hand unused device memory back (after a failure,
        or before another process needs the GPU). The model stays usable."""
        self.clear_image_cache()
        free_device_memory()

    # ------------------------------------------------------------------ text
    def prompt_ids(self, instruction: str, history: Sequence[Turn] | None = None) -> list[int]:
        """Prompt ids with IMAGE_TOKEN_INDEX where the image features go.

        Built the way the reference builds them.
        """
        return tokenize_prompt(self.tokenizer, build_prompt(instruction, history))

    # ------------------------------------------------------------------ generation
    @contextmanager
    def _capture_last_states(self) -> Iterator[tuple[list[torch.Tensor], list[float]]]:
        """Collect, per forward pass, the last position's final-norm state and when it finished."""
        states: list[torch.Tensor] = []
        times: list[float] = []

        def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
            states.append(output[:, -1].detach())
            times.append(self._stopwatch.now())

        handle = self.net.llm.get_decoder().norm.register_forward_hook(hook)
        try:
            yield states, times
        finally:
            handle.remove()

    def _generation_kwargs(
        self, prompt_length: int, generate_kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        kwargs = dict(generate_kwargs)
        if kwargs.get("num_beams", 1) != 1:
            raise ValueError("LISA's [SEG] capture needs num_beams=1 (greedy or sampling)")
        room = self.max_context_tokens - prompt_length
        if room < 1:
            raise ValueError(
                f"the instruction is too long: the prompt takes {prompt_length} tokens "
                f"and the model's context is {self.max_context_tokens}; "
                "shorten it or the conversation history"
            )
        requested = int(kwargs.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS))
        if requested > room:
            logger.warning(
                "max_new_tokens lowered from %d to %d to fit the model's context", requested, room
            )
        kwargs["max_new_tokens"] = min(requested, room)
        kwargs.setdefault("do_sample", False)
        kwargs.setdefault("num_beams", 1)
        kwargs.setdefault("use_cache", True)
        kwargs.setdefault("eos_token_id", self.layout.eos)
        kwargs.setdefault(
            "pad_token_id", self.tokenizer.pad_token_id or self.tokenizer.unk_token_id or 0
        )
        return kwargs

    @torch.inference_mode()
    def segment(
        self,
        image: np.ndarray,
        instruction: str,
        history: Sequence[Turn] | None = None,
        *,
        on_stage: StageCallback | None = None,
        stop: threading.Event | None = None,
        on_text: TextCallback | None = None,
        on_mask: MaskCallback | None = None,
        **generate_kwargs: Any,
    ) -> SegmentationResult:
        """Answer `instruction` about `image` (RGB uint8 HxWx3), one mask per [SEG] in the answer.

        `history` holds earlier (instruction, answer) turns on the same image. The controls a caller
        serving requests needs, without knowing transformers:
        - `on_stage(stage)`: "encoding_image", "generating", "decoding_masks" as they start;
        - `stop`: once set (from any thread), generation ends at the next decoding step and the
          answer so far is decoded (cancel, preemption, shutdown);
        - `on_text(text, tokens)`: the answer so far, decoded as the final one, at most every 50 ms
          and once at the end;
        - `on_mask(partial)`: once per [SEG], at the step that generates it, while generation goes
          on: a result with the answer so far and every mask decoded so far. A [SEG]'s state is
          final when it is generated (a causal model never revisits it), so each early mask is the
          final result's mask of that index, bit for bit; the final result reuses them. Called on
          the generating thread: what it raises ends `segment`.
        `generate_kwargs` go to transformers' `generate` (max_new_tokens, logits_processor,
        stopping_criteria, streamer, ...); logits processors and streamers see the generated ids
        only, not the prompt.
        """
        if not isinstance(instruction, str) or not instruction.strip():
            raise ValueError("instruction is empty: say what to segment")
        generate_kwargs = self._with_controls(generate_kwargs, stop, on_text)
        with self.exclusive():
            return self._segment(
                image,
                instruction.strip(),
                history,
                on_stage or (lambda _stage: None),
                on_mask,
                generate_kwargs,
            )

    @torch.inference_mode()
    def follow(
        self,
        image: np.ndarray,
        result: SegmentationResult,
        *,
        on_stage: StageCallback | None = None,
    ) -> SegmentationResult:
        """The masks of `result`'s targets in `image` (another frame of the same scene): `result`'s
        prompts through SAM's mask decoder on this image's SAM embedding. CLIP and the LLM do not
        run, so this costs the SAM image encoder (nothing if `image` is the cached one) and the
        mask decoder.

        The answer is not re-read: text, token_ids, phrases, text_offsets and prompts are
        `result`'s; mask_logits and scores (SAM's predicted IoU on this image) are new; timings
        hold "sam_encoder", "mask_decoder", "total". Following `result` on the image it was
        computed on gives exactly its masks and scores. `on_stage` hears "encoding_image" and
        "decoding_masks". A result without masks follows to no masks (nothing runs); one without
        prompts (built by hand) is refused with ValueError.
        """
        validate_image(image)
        count = len(result.mask_logits)
        if len(result.prompts) != count:
            raise ValueError(
                f"this result has {count} mask(s) but no prompts to follow them with: "
                "only results of LisaModel.segment (or follow) carry them"
            )
        if count and result.prompts.shape[1] != self.net.prompt_dim:
            raise ValueError(
                f"this result's prompts are {result.prompts.shape[1]}-dimensional but this "
                f"model's SAM takes {self.net.prompt_dim}: it came from another model"
            )
        notify = on_stage or (lambda _stage: None)
        with self.exclusive():
            start = self._stopwatch.now()
            if count:
                notify("encoding_image")
                encoding, encoded = self._encode_image(image, clip=False)
                notify("decoding_masks")
                mask_start = self._stopwatch.now()
                logits, scores = self.net.masks(torch.as_tensor(result.prompts), encoding)
                logits, scores = logits.float().cpu().numpy(), scores.float().cpu().numpy()
            else:
                encoded = {"sam_encoder": 0.0}
                mask_start = start
                logits, scores, _ = stack_masks([], image.shape[:2], self.net.prompt_dim)
            end = self._stopwatch.now()
        return SegmentationResult(
            text=result.text,
            token_ids=list(result.token_ids),
            mask_logits=logits,
            scores=scores,
            phrases=list(result.phrases),
            text_offsets=list(result.text_offsets),
            timings={
                "sam_encoder": encoded["sam_encoder"],
                "mask_decoder": end - mask_start,
                "total": end - start,
            },
            prompts=result.prompts,
        )

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """One inference at a time; running out of device memory frees it and says what to do.

        `segment` and `follow` run inside it; so does any other pass over the model's weights
        (`teacher_forcing.forced_answer`), so it shares the model safely and fails alike."""
        try:
            with self._lock:
                yield
        except torch.OutOfMemoryError as error:
            self.free_memory()
            raise LisaOutOfMemoryError(
                f"out of {self.device.type} memory during inference: "
                "use quantization='nf4' or 'int8', a smaller image or max_new_tokens, "
                "or free the device"
            ) from error

    def _with_controls(
        self,
        generate_kwargs: dict[str, Any],
        stop: threading.Event | None,
        on_text: TextCallback | None,
    ) -> dict[str, Any]:
        """`generate_kwargs` with the stopping criterion and streamer for `stop` and `on_text`."""
        kwargs = dict(generate_kwargs)
        if stop is not None:
            kwargs["stopping_criteria"] = StoppingCriteriaList(
                [*(kwargs.get("stopping_criteria") or []), StopOnEvent(stop)]
            )
        if on_text is not None:
            if kwargs.get("streamer") is not None:
                raise ValueError(
                    "pass on_text or a streamer, not both (generate takes one streamer)"
                )
            decode = lambda ids: decode_answer(self.tokenizer, ids, self.layout)  # noqa: E731
            kwargs["streamer"] = AnswerStreamer(decode, on_text)
        return kwargs

    def _segment(
        self,
        image: np.ndarray,
        instruction: str,
        history: Sequence[Turn] | None,
        notify: StageCallback,
        on_mask: MaskCallback | None,
        generate_kwargs: dict[str, Any],
    ) -> SegmentationResult:
        start = self._stopwatch.now()
        notify("encoding_image")
        encoding, encoded = self._encode_image(image, clip=True)

        prompt_ids = self.prompt_ids(instruction, history)
        embeddings = self.net.embed_prompt(prompt_ids, encoding.image_tokens)
        kwargs = self._generation_kwargs(embeddings.shape[1], generate_kwargs)

        notify("generating")
        generate_start = self._stopwatch.now()
        with self._capture_last_states() as (states, step_times):
            early = self._early_masks(on_mask, states, encoding, start, kwargs)
            output = self.net.llm.generate(
                inputs_embeds=embeddings,
                attention_mask=torch.ones(
                    embeddings.shape[:2], dtype=torch.long, device=self.device
                ),
                **kwargs,
            )
        sequences = output.sequences if hasattr(output, "sequences") else output
        token_ids = sequences[0].tolist()

        notify("decoding_masks")
        mask_start = self._stopwatch.now()
        seg_steps = [step for step, token in enumerate(token_ids) if token == self.layout.seg]
        masks = dict(early.masks) if early is not None else {}
        missing = [step for step in seg_steps if step not in masks]
        decoded = self._decode_masks([states[step] for step in missing], encoding)
        masks.update(zip(missing, decoded, strict=True))
        logits, scores, prompts = stack_masks(
            [masks[step] for step in seg_steps], encoding.original_hw, self.net.prompt_dim
        )
        end = self._stopwatch.now()

        text = decode_answer(self.tokenizer, token_ids, self.layout)
        phrases, offsets = seg_phrases(text)
        timings = self._timings(encoded, start, generate_start, step_times, mask_start, end)
        if seg_steps:  # when the first mask was ready: early, or with the others at the end
            early_first = early.first_mask if early is not None else None
            timings["first_mask"] = early_first if early_first is not None else end - start
        return SegmentationResult(
            text=text,
            token_ids=token_ids,
            mask_logits=logits,
            scores=scores,
            phrases=phrases[: len(logits)],
            text_offsets=offsets[: len(logits)],
            timings=timings,
            prompts=prompts,
        )

    def _early_masks(
        self,
        on_mask: MaskCallback | None,
        states: list[torch.Tensor],
        encoding: ImageEncoding,
        start: float,
        generate_kwargs: dict[str, Any],
    ) -> EarlyMasks | None:
        """For `on_mask`: the decoder of each [SEG]'s mask as it is generated, added to
        `generate_kwargs`' stopping criteria (called after every step)."""
        if on_mask is None:
            return None
        early = EarlyMasks(
            decode=lambda step: self._decode_masks([states[step]], encoding)[0],
            answer_text=lambda ids: decode_answer(self.tokenizer, ids, self.layout),
            on_mask=on_mask,
            elapsed=lambda: self._stopwatch.now() - start,
            image_hw=encoding.original_hw,
            prompt_dim=self.net.prompt_dim,
        )
        generate_kwargs["stopping_criteria"] = StoppingCriteriaList(
            [*(generate_kwargs.get("stopping_criteria") or []), OnToken(self.layout.seg, early)]
        )
        return early

    def _decode_masks(
        self, seg_states: list[torch.Tensor], encoding: ImageEncoding
    ) -> list[DecodedMask]:
        """Each [SEG] state's mask on the encoded image, in one pass of SAM's mask decoder."""
        if not seg_states:
            return []
        prompts = self.net.seg_prompts(torch.cat(seg_states, dim=0))
        logits, scores = self.net.masks(prompts, encoding)
        logits, scores = logits.float().cpu().numpy(), scores.float().cpu().numpy()
        prompts = prompts.cpu().numpy()
        return [DecodedMask(*parts) for parts in zip(logits, scores, prompts, strict=True)]

    @staticmethod
    def _timings(
        encoded: dict[str, float],
        start: float,
        generate_start: float,
        step_times: list[float],
        mask_start: float,
        end: float,
    ) -> dict[str, float]:
        first = step_times[0] if step_times else mask_start
        decode_steps = max(len(step_times) - 1, 0)
        decode = (mask_start - first) if step_times else 0.0
        return {
            **encoded,
            "prefill": first - generate_start,
            "decode": decode,
            "decode_per_token": decode / decode_steps if decode_steps else 0.0,
            "mask_decoder": end - mask_start,
            "total": end - start,
        }


def free_device_memory() -> None:
    """Collect unreachable tensors and return the CUDA memory PyTorch keeps cached, so a dropped
    model or a failed step actually frees the GPU (for this process's next load or another's).
    The host memory the dropped tensors held goes back to the system too (:mod:`.host_memory`).
    """
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    host_memory.trim()
