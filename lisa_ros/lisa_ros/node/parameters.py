"""The lisa node's parameters: one table that declares, documents and validates them.

Everything a user can set lives in :data:`PARAMETERS`, so the declarations (with descriptions and
ranges, visible through ``ros2 param describe``), the validation of new values, ``config/lisa.yaml``
and the parameter table of docs/node.md cannot disagree: tests compare the YAML and the table with
it.

Model parameters (``model`` ... ``adapter``) are read when the node is configured: change them, then
run the ``cleanup`` and ``configure`` transitions to load another model. All others take effect at
once.

The lists of accepted values come from the code that acts on them (:mod:`lisa_ros.model.options`,
the scheduler's busy policies, the recorder's folder check). This module imports only those
torch-free modules and ``rcl_interfaces`` message types, so it can be used without a running ROS
graph or the model stack.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

from lisa_ros.model.options import PRECISIONS, QUANTIZATIONS, device_problem

from .depth import DEPTH_TRANSPORTS
from .recording import record_dir_problem
from .scheduler import BUSY_POLICIES

__all__ = [
    "BUSY_POLICIES",
    "DEPTH_TRANSPORTS",
    "IMAGE_TRANSPORTS",
    "PARAMETERS",
    "ParameterSpec",
    "descriptor",
    "validate",
    "validate_together",
]

IMAGE_TRANSPORTS = ("raw", "compressed")
# ROS parameters cannot be None: '' stands for load_model's None (no quantization, pick the device).
UNSET = ""

ParameterValue = bool | int | float | str


@dataclass(frozen=True)
class ParameterSpec:
    """One parameter: its default (which also fixes its type), what it does, and what it accepts."""

    name: str
    default: ParameterValue
    description: str
    choices: tuple[str, ...] | None = None
    int_range: tuple[int, int] | None = None
    float_range: tuple[float, float] | None = None
    read_on_configure: bool = False
    check: Callable[[Any], str | None] | None = None

    def validate(self, value: Any) -> str | None:
        """Return why ``value`` is not acceptable, or None when it is."""
        if self.choices is not None and value not in self.choices:
            allowed = ", ".join(repr(choice) for choice in self.choices)
            return f"{self.name}={value!r} is not one of {allowed}"
        if self.int_range is not None and not self.int_range[0] <= value <= self.int_range[1]:
            return f"{self.name}={value} is outside [{self.int_range[0]}, {self.int_range[1]}]"
        if self.float_range is not None and not self.float_range[0] <= value <= self.float_range[1]:
            return f"{self.name}={value} is outside [{self.float_range[0]}, {self.float_range[1]}]"
        if self.check is not None:
            return self.check(value)
        return None


def _no_surrounding_whitespace(name: str) -> Callable[[Any], str | None]:
    def check(value: str) -> str | None:
        if value != value.strip():
            return f"{name}={value!r} has leading or trailing whitespace (a copy-paste slip?)"
        return None

    return check


def _device_check(value: str) -> str | None:
    problem = device_problem(value, auto=UNSET)
    return None if problem is None else f"device={value!r} {problem}"


_ON_CONFIGURE = " Read on configure: to change it on a running node, run cleanup then configure."

PARAMETERS: tuple[ParameterSpec, ...] = (
    ParameterSpec(
        "autostart",
        True,
        "Configure and activate the node by itself at start-up. Set false when a lifecycle "
        "manager (e.g. nav2_lifecycle_manager or launch's lifecycle events) drives the node.",
    ),
    # --- model (read on configure) --------------------------------------------------------
    ParameterSpec(
        "model",
        "xinlai/LISA-7B-v1",
        "LISA checkpoint: a Hugging Face hub id (e.g. xinlai/LISA-13B-llama2-v1) or a local "
        "folder." + _ON_CONFIGURE,
        read_on_configure=True,
        check=_no_surrounding_whitespace("model"),
    ),
    ParameterSpec(
        "vision_tower",
        "",
        "CLIP vision tower (hub id or folder). Empty: the one named in the checkpoint's "
        "config.json." + _ON_CONFIGURE,
        read_on_configure=True,
        check=_no_surrounding_whitespace("vision_tower"),
    ),
    ParameterSpec(
        "precision",
        "bf16",
        "Weights and activations: bf16 (recent GPUs), fp16 (older GPUs) or fp32 (CPU)."
        + _ON_CONFIGURE,
        choices=tuple(PRECISIONS),
        read_on_configure=True,
    ),
    ParameterSpec(
        "quantization",
        "",
        "Quantize the language model with bitsandbytes to fit smaller GPUs: '' (none), 'int8' or "
        "'nf4' (with precision bf16 or fp16; meant for CUDA, slow on the CPU)." + _ON_CONFIGURE,
        choices=(UNSET, *QUANTIZATIONS),
        read_on_configure=True,
    ),
    ParameterSpec(
        "device",
        "",
        "Torch device: '' (the first GPU when there is one, else the CPU), 'cpu', 'cuda' or "
        "'cuda:<index>'." + _ON_CONFIGURE,
        read_on_configure=True,
        check=_device_check,
    ),
    ParameterSpec(
        "adapter",
        "",
        "Optional lisa-finetune output folder (or hub id): restores its LoRA, embeddings, "
        "lm_head, text_hidden_fcs and SAM mask decoder. Empty: none." + _ON_CONFIGURE,
        read_on_configure=True,
        check=_no_surrounding_whitespace("adapter"),
    ),
    # --- generation ------------------------------------------------------------------------
    ParameterSpec(
        "max_new_tokens",
        512,
        "Longest answer in tokens; generation stops there (the masks of the [SEG] tokens "
        "produced so far are still returned).",
        int_range=(1, 4096),
    ),
    ParameterSpec(
        "publish_partial",
        True,
        "Continuous mode: publish ~/segmentation (partial: true, the answer so far), ~/masks, "
        "~/overlay, ~/markers and ~/points as soon as each [SEG]'s mask is decoded, while the "
        "answer is still being written; the complete answer follows. False: complete answers "
        "only. Goals always get each mask in their feedback.",
    ),
    # --- inputs ----------------------------------------------------------------------------
    ParameterSpec(
        "image_transport",
        "raw",
        "'raw': subscribe to sensor_msgs/Image on 'image'. 'compressed': subscribe to "
        "sensor_msgs/CompressedImage (jpeg/png) on '<image>/compressed', following the remapped "
        "name of 'image' as image_transport does. Applied on activate.",
        choices=IMAGE_TRANSPORTS,
    ),
    ParameterSpec(
        "max_rate_hz",
        1.0,
        "Continuous mode: segment the latest frame at most this often. 0: as often as the model "
        "can (each inference takes the newest frame; older frames are dropped, never queued).",
        float_range=(0.0, 1000.0),
    ),
    ParameterSpec(
        "min_image_side",
        16,
        "Images with a side shorter than this many pixels are rejected (nothing meaningful can be "
        "segmented at the vision encoders' input sizes).",
        int_range=(1, 1024),
    ),
    ParameterSpec(
        "max_image_side",
        4096,
        "Images with a side longer than this many pixels are rejected before any decoding, to "
        "bound memory use and latency.",
        int_range=(16, 65536),
    ),
    ParameterSpec(
        "max_frame_age_s",
        1.0,
        "A goal without an image of its own runs on the camera's latest frame only when the node "
        "received it at most this many seconds ago (node clock: sim time under use_sim_time; "
        "the receive time, not the header stamp, so cameras with unsynchronised clocks work); "
        "older: NO_IMAGE, saying how old. 0: off (any latest frame).",
        float_range=(0.0, 3600.0),
    ),
    ParameterSpec(
        "max_instruction_chars",
        2000,
        "Longer instructions are rejected with a clear error (prompts must also fit the model's "
        "context; the model checks that too).",
        int_range=(1, 1_000_000),
    ),
    ParameterSpec(
        "instruction_text",
        "",
        "A standing instruction to start with: from activation it is segmented continuously, "
        "exactly as if it had been published on 'instruction', until a message there replaces "
        "or clears it. Setting it on a running node replaces the standing instruction the same "
        "way. Applied again on every configure. Empty: none (goals only).",
    ),
    # --- following (docs/node.md "Following targets") ----------------------------------------
    ParameterSpec(
        "follow_rate_hz",
        10.0,
        "Between reasoning steps, follow the last answer's targets on newer frames (SAM alone "
        "decodes its [SEG] prompts again; no CLIP, no LLM) at most this often. 0: off, every "
        "output is reasoned as before.",
        float_range=(0.0, 1000.0),
    ),
    ParameterSpec(
        "reasoning_share",
        0.5,
        "While following is on, reasoning keeps about this share of the inference thread's time: "
        "a reasoning step of d seconds leaves the next d * (1 - share) / share seconds to "
        "following, so followed frames keep coming when a step takes longer than 1/max_rate_hz "
        "(slow hardware). 1: reasoning first, following only gets what max_rate_hz leaves.",
        float_range=(0.05, 1.0),
    ),
    ParameterSpec(
        "follow_goal_seconds",
        10.0,
        "After a goal on the camera's latest frame succeeds, follow its targets on new frames "
        "for this many seconds, on the same outputs (a standing instruction's next answer takes "
        "over). 0: off.",
        float_range=(0.0, 3600.0),
    ),
    ParameterSpec(
        "follow_min_score_ratio",
        0.5,
        "A followed mask whose SAM-predicted IoU falls below this share of the reasoned mask's "
        "no longer holds: LISA reasons again (a goal's targets stop being followed).",
        float_range=(0.0, 1.0),
    ),
    ParameterSpec(
        "follow_max_area_change",
        2.0,
        "A followed mask more than this factor larger or smaller than the reasoned one no longer "
        "holds.",
        float_range=(1.0, 1000.0),
    ),
    ParameterSpec(
        "follow_max_shift",
        0.2,
        "A followed mask whose box centre moved by more than this share of the image diagonal "
        "from the reasoned one no longer holds.",
        float_range=(0.0, 2.0),
    ),
    # --- depth and 3D targets -----------------------------------------------------------------
    ParameterSpec(
        "depth_transport",
        "raw",
        "'raw': subscribe to sensor_msgs/Image (16UC1 millimetres or 32FC1 metres) on 'depth', the "
        "depth image registered (aligned) to the colour camera. 'compressedDepth': subscribe to "
        "sensor_msgs/CompressedImage on '<depth>/compressedDepth' (image_transport's "
        "compressedDepth, png), following the remapped name of 'depth'. Applied on activate.",
        choices=DEPTH_TRANSPORTS,
    ),
    ParameterSpec(
        "depth_max_skew_s",
        0.05,
        "A colour frame is paired with the depth image of the nearest stamp, if it is at most this "
        "many seconds away; otherwise its answer is 2D only and depth_status says why. Cameras "
        "that stamp both streams alike (RealSense, ZED aligned depth) pair exactly.",
        float_range=(0.0, 1.0),
    ),
    ParameterSpec(
        "depth_unit_scale",
        0.0,
        "Metres per unit of 16UC1 depth. 0: millimetres, the ROS convention (REP 118); set it "
        "for cameras that use other units. 32FC1 depth is always in metres.",
        float_range=(0.0, 100.0),
    ),
    ParameterSpec(
        "depth_min_m",
        0.1,
        "Depth readings nearer than this (metres) are treated as missing (sensor noise at the "
        "minimum range).",
        float_range=(0.0, 1000.0),
    ),
    ParameterSpec(
        "depth_max_m",
        10.0,
        "Depth readings farther than this (metres) are treated as missing (beyond the sensor's "
        "useful range).",
        float_range=(0.001, 1000.0),
    ),
    ParameterSpec(
        "depth_erode_px",
        3,
        "The mask is eroded by this many colour-image pixels before its depth is read, so the few "
        "pixels a mask bleeds over the object's edge, and the flying pixels there, do not pull the "
        "3D target onto the background. 0: no erosion.",
        int_range=(0, 100),
    ),
    # --- action ----------------------------------------------------------------------------
    ParameterSpec(
        "busy_policy",
        "queue",
        "What a goal arriving while another goal runs gets. 'queue': waits its turn (up to "
        "max_queued_goals waiting, more are rejected); 'reject': rejected; 'preempt': the running "
        "and waiting goals are aborted with PREEMPTED and the new goal runs. Continuous-mode "
        "frames always yield to goals.",
        choices=BUSY_POLICIES,
    ),
    ParameterSpec(
        "max_queued_goals",
        4,
        "busy_policy 'queue': how many goals may wait behind the running one.",
        int_range=(0, 256),
    ),
    ParameterSpec(
        "max_sessions",
        32,
        "Conversations (goal session_id) remembered for follow-up turns; the least recently used "
        "is forgotten first. 0 disables follow-ups.",
        int_range=(0, 10_000),
    ),
    # --- recording (docs/node.md "Recording answered frames") --------------------------------
    ParameterSpec(
        "record_dir",
        "",
        "Save every reasoned answer (a standing instruction's frame, a goal's first turn; never a "
        "followed frame) into this folder as a sample of the simple dataset format that "
        "lisa-eval and lisa-finetune read: the frame, the union of its masks, the instruction "
        "and the answer, for labelling and evaluation. An absolute path or ~/...; created if "
        "needed. Empty: off. Takes effect from the next answer.",
        check=record_dir_problem,
    ),
)

_BY_NAME: dict[str, ParameterSpec] = {spec.name: spec for spec in PARAMETERS}


def spec(name: str) -> ParameterSpec:
    """The spec of parameter ``name`` (KeyError for a name the node does not declare)."""
    return _BY_NAME[name]


def descriptor(parameter: ParameterSpec) -> ParameterDescriptor:
    """A ParameterDescriptor carrying the description, choices and range of ``parameter``."""
    description = parameter.description
    constraints = ""
    if parameter.choices is not None:
        constraints = "one of: " + ", ".join(repr(choice) for choice in parameter.choices)
    result = ParameterDescriptor(description=description, additional_constraints=constraints)
    if parameter.int_range is not None:
        result.integer_range = [
            IntegerRange(from_value=parameter.int_range[0], to_value=parameter.int_range[1], step=0)
        ]
    if parameter.float_range is not None:
        result.floating_point_range = [
            FloatingPointRange(
                from_value=parameter.float_range[0], to_value=parameter.float_range[1], step=0.0
            )
        ]
    return result


def validate(values: Iterable[tuple[str, Any]]) -> str | None:
    """Check ``(name, value)`` pairs against the table; return the first reason to refuse, or None.

    Unknown names are left alone (rclpy refuses undeclared parameters by itself); values of the
    wrong type never get here because every parameter is statically typed.
    """
    for name, value in values:
        parameter = _BY_NAME.get(name)
        if parameter is None:
            continue
        reason = parameter.validate(value)
        if reason is not None:
            return reason
    return None


#: Pairs of parameters whose first must not exceed the second.
ORDERED_PAIRS = (("min_image_side", "max_image_side"), ("depth_min_m", "depth_max_m"))


def validate_together(value: Callable[[str], Any]) -> str | None:
    """Check the parameters that constrain each other, with ``value(name)`` the value a parameter
    will have (None while it is not declared yet); return why they are refused, or None."""
    for low_name, high_name in ORDERED_PAIRS:
        low, high = value(low_name), value(high_name)
        if low is not None and high is not None and low > high:
            return f"{low_name}={low} is larger than {high_name}={high}"
    text, limit = value("instruction_text"), value("max_instruction_chars")
    if text is not None and limit is not None and len(text) > limit:
        return (
            f"instruction_text has {len(text)} characters; the limit is "
            f"max_instruction_chars={limit}: shorten it"
        )
    return None


def defaults() -> Mapping[str, ParameterValue]:
    """Name -> default value of every parameter, in declaration order."""
    return {parameter.name: parameter.default for parameter in PARAMETERS}
