"""``lisa_node``: LISA reasoning segmentation as a ROS 2 lifecycle node.

Lifecycle:
    configure   loads the model (parameters model, vision_tower, precision, quantization, device,
                adapter) and creates the result publishers. A model that cannot be loaded makes the
                transition FAIL with the reason in the log and on /diagnostics; the node stays up
                (unconfigured), so the parameters can be fixed and configure tried again.
    activate    subscribes to the camera and the instruction and starts processing.
    deactivate  stops processing: the running inference stops within one decoding step, waiting
                goals end with MODEL_NOT_READY; answers still waiting to be recorded are written.
    cleanup     frees the model and its GPU memory, and ends the recorder's writer thread.
Run directly (``ros2 run lisa_ros lisa_node``) it configures and activates itself (``autostart``).

Interfaces (names relative, so namespaces and remapping apply):
    subscribes  image (sensor_msgs/Image) or image/compressed (image_transport 'compressed'),
                camera_info (sensor_msgs/CameraInfo), depth (sensor_msgs/Image, registered to the
                colour camera) or depth/compressedDepth (image_transport 'compressedDepth'),
                instruction (std_msgs/String: the standing instruction of continuous mode; an
                empty string stops it)
    publishes   ~/text (std_msgs/String), ~/masks (mono8 label image: 0 background, k = mask k),
                ~/overlay (bgr8), ~/segmentation (lisa_ros_interfaces/Segmentation),
                ~/markers (visualization_msgs/MarkerArray), ~/points (sensor_msgs/PointCloud2),
                /diagnostics (diagnostic_msgs/DiagnosticArray)
    action      ~/segment (lisa_ros_interfaces/action/Segment)

Recording: with ``record_dir`` set, every reasoned answer is saved as a dataset sample by
:class:`~lisa_ros.node.recording.AnswerRecorder`, on a writer thread of its own.

Threading: the model runs on one dedicated inference thread fed by
:class:`~lisa_ros.node.scheduler.WorkScheduler`. The topic inputs are taken on a thread of their
own, by a hidden node's single-threaded executor (:class:`~lisa_ros.node.input_node.InputNode`):
in arrival order, and at what a bare subscription costs, where this node's executor spent
milliseconds of CPU per camera frame. The other callbacks run on a MultiThreadedExecutor. The
action server and the diagnostics timer are in a reentrant group.
The lifecycle services (and the autostart timer) have a reentrant group of their own: a configure
that loads a model for minutes holds one executor thread, while ``get_state`` and the parameter
services (the node's default group) keep answering. Transitions still never interleave: the rcl
state machine refuses a transition while another is in progress (the service answers
``success: false`` at once).

Its length: the node class is the wiring every concern meets in (lifecycle transitions,
parameters, subscriptions, publishers, the action, diagnostics, the follow target); each concern's
logic is in its own module (jobs, goals, scheduler, segment_action, diagnostics, inputs, outputs),
and what is left here reads or changes the node's state, which one lifecycle step must see whole.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
from typing import Any, Callable

import cv2
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import State as StateMsg
from lisa_ros_interfaces.msg import Segmentation
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.lifecycle import (
    LifecycleNode,
    LifecycleNodeMixin,
    LifecycleState,
    TransitionCallbackReturn,
)
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import String
from visualization_msgs.msg import MarkerArray

from lisa_ros import model as lisa_model  # lazy: torch is imported by the first configure
from lisa_ros.model import LisaLoadError, host_memory

from .core_logging import CoreLogRoute
from .depth import DepthSettings
from .diagnostics import Health, HealthSnapshot
from .following import FollowSettings, FollowTarget
from .frames import Frame
from .input_node import InputNode
from .inputs import ImageLimits, InputError, check_instruction
from .jobs import FollowJob, FrameJob, JobSettings, Pipeline
from .outputs import Answer, ResultPublishers
from .pairing import CameraStreams
from .parameters import PARAMETERS, descriptor, validate, validate_together
from .recording import AnswerRecorder, record_folder
from .scheduler import WorkScheduler
from .segment_action import SegmentActionServer
from .sessions import SessionStore
from .shutdown import ShutdownRequest
from .shutdown import install as install_shutdown_request
from .thread_names import name_this_thread

__all__ = ["LisaNode", "ModelSettings", "main", "run", "spin"]


# Camera input: only the newest frame matters, and a lost frame is better than a late one.
CAMERA_QOS = QoSProfile(
    reliability=ReliabilityPolicy.BEST_EFFORT,
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    durability=DurabilityPolicy.VOLATILE,
)
# Depth is paired with colour frames by stamp: keep the few that arrive while a callback runs.
DEPTH_QOS = QoSProfile(
    reliability=ReliabilityPolicy.BEST_EFFORT,
    history=HistoryPolicy.KEEP_LAST,
    depth=5,
    durability=DurabilityPolicy.VOLATILE,
)
# The standing instruction must not be lost. Volatile (not transient local) so that both plain
# publishers (`ros2 topic pub` defaults) and latched ones can reach the node.
INSTRUCTION_QOS = QoSProfile(
    reliability=ReliabilityPolicy.RELIABLE,
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    durability=DurabilityPolicy.VOLATILE,
)
# Results: every answer delivered to every subscriber; a short history bounds memory when a
# subscriber lags (images are large).
RESULT_QOS = QoSProfile(
    reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=5
)
RESULT_IMAGE_QOS = QoSProfile(
    reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=2
)

# Read on configure only: a change while a model is loaded waits for the next configure.
MODEL_PARAMETERS = frozenset(spec.name for spec in PARAMETERS if spec.read_on_configure)

DIAGNOSTICS_PERIOD = 1.0
# How long a shutdown waits for the executor's callbacks to end (launch sends SIGTERM after 5 s).
SHUTDOWN_TIMEOUT_S = 3.0
# How log lines name a standing instruction that came from the parameter, not the topic.
INSTRUCTION_PARAMETER = " (parameter instruction_text)"


class ModelSettings:
    """The model parameters, read on configure."""

    def __init__(self, node: LifecycleNode) -> None:
        value = lambda name: node.get_parameter(name).value  # noqa: E731
        self.model: str = value("model")
        self.vision_tower: str = value("vision_tower")
        self.precision: str = value("precision")
        self.quantization: str = value("quantization")
        self.device: str = value("device")
        self.adapter: str = value("adapter")

    def changed(self, other: ModelSettings) -> list[str]:
        """The names of the settings whose values differ in ``other``."""
        return [name for name, value in vars(self).items() if vars(other)[name] != value]

    def describe(self) -> str:
        parts = [f"'{self.model}'", self.precision]
        if self.quantization:
            parts.append(f"{self.quantization} LLM")
        parts.append(f"on {self.device or 'the best device'}")
        if self.vision_tower:
            parts.append(f"vision tower '{self.vision_tower}'")
        if self.adapter:
            parts.append(f"adapter '{self.adapter}'")
        return ", ".join(parts)


class LisaNode(LifecycleNode):
    """The LISA lifecycle node. Subclasses may override :meth:`load_model` (e.g. to wrap it)."""

    def __init__(self, node_name: str = "lisa", **kwargs: Any) -> None:
        # LifecycleNode.__init__, with the lifecycle services in a group of their own (see the
        # module docstring): rclpy's LifecycleNode does not pass a callback group on to the mixin.
        Node.__init__(self, node_name, **kwargs)
        self._lifecycle_group = ReentrantCallbackGroup()
        LifecycleNodeMixin.__init__(self, callback_group=self._lifecycle_group)
        # rcutils severities are Python's logging levels (DEBUG 10 ... FATAL 50).
        self._core_logs = CoreLogRoute(
            self.get_logger(), int(self.get_logger().get_effective_level())
        )
        self._core_logs.attach()
        self._callback_group = ReentrantCallbackGroup()
        self._health = Health(self.get_fully_qualified_name())
        self._model: lisa_model.LisaModel | None = None
        self._loaded_settings: ModelSettings | None = None  # what self._model was loaded with
        self._pipeline: Pipeline | None = None
        self._scheduler: WorkScheduler[Frame] | None = None
        self._worker: threading.Thread | None = None
        self._sessions = SessionStore(0)
        # Exists in every state, so record_dir can be set (and is validated) before configure.
        self._recorder = AnswerRecorder(self.get_logger())

        # Validation runs for the values given at start-up too (a bad YAML value stops the node
        # with the reason), then for every later change.
        self.add_on_set_parameters_callback(self._on_set_parameters)
        for spec in PARAMETERS:
            self.declare_parameter(spec.name, spec.default, descriptor(spec))
        self._sessions.set_capacity(self._param("max_sessions"))
        self._streams = CameraStreams(report=self._report_input_error)
        self._input_node = InputNode(self)
        self._inputs: list[Any] = []
        self._result_publishers: list[Any] = []

        # The action server and diagnostics exist in every state: a goal sent to an unconfigured
        # or inactive node gets MODEL_NOT_READY with the reason, instead of waiting for a server.
        self._action_server = SegmentActionServer(
            self, host=self, callback_group=self._callback_group
        )
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(
            DIAGNOSTICS_PERIOD, self._publish_diagnostics, callback_group=self._callback_group
        )

        self._autostart_timer = None
        if self._param("autostart"):
            # Once spinning, so the lifecycle and parameter services answer while the model loads.
            self._autostart_timer = self.create_timer(
                0.0, self._autostart, callback_group=self._lifecycle_group
            )

    # --- lifecycle ---------------------------------------------------------------------------

    def load_model(self, settings: ModelSettings) -> lisa_model.LisaModel:
        """Load the model for ``settings``; raises LisaLoadError with a one-line reason."""
        return lisa_model.load_model(
            settings.model,
            vision_tower=settings.vision_tower or None,
            precision=settings.precision,
            quantization=settings.quantization or None,
            device=settings.device or None,
            adapter=settings.adapter or None,
            progress="log",  # a log file or launch's pseudo-terminal: lines, not redrawn bars
        )

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        settings = ModelSettings(self)
        self.get_logger().info(f"Loading LISA {settings.describe()} (this can take minutes)")
        started = time.perf_counter()
        try:
            model = self.load_model(settings)
        except LisaLoadError as error:
            return self._configure_failed(settings, f"{error}")
        except Exception as error:  # noqa: BLE001 - e.g. out of GPU memory; stay alive, say why
            return self._configure_failed(settings, f"{type(error).__name__}: {error}")
        self._health.set_load_error(None)
        host_memory.keep_free_for_reuse()  # frames to come: their buffers reuse the same pages
        self._model = model
        self._loaded_settings = settings
        self.get_logger().info(
            f"LISA loaded in {time.perf_counter() - started:.1f} s "
            f"on {model.device} ({model.dtype})"
        )

        publishers = {
            "text": self.create_lifecycle_publisher(String, "~/text", RESULT_QOS),
            "masks": self.create_lifecycle_publisher(Image, "~/masks", RESULT_IMAGE_QOS),
            "overlay": self.create_lifecycle_publisher(Image, "~/overlay", RESULT_IMAGE_QOS),
            "segmentation": self.create_lifecycle_publisher(
                Segmentation, "~/segmentation", RESULT_QOS
            ),
            "markers": self.create_lifecycle_publisher(MarkerArray, "~/markers", RESULT_QOS),
            "points": self.create_lifecycle_publisher(PointCloud2, "~/points", RESULT_IMAGE_QOS),
        }
        self._result_publishers = list(publishers.values())
        self._pipeline = Pipeline(
            model=model,
            outputs=ResultPublishers(publishers),
            sessions=self._sessions,
            report_input_error=self._report_input_error,
            logger=self.get_logger(),
            on_reasoned=self._on_reasoned,
            on_follow_degraded=self._on_follow_degraded,
            record=self._recorder.offer_answer,
        )
        self._scheduler = WorkScheduler(self._frame_job, self._follow_job)
        self._scheduler.set_max_rate(self._param("max_rate_hz"))
        self._scheduler.set_follow_rate(self._param("follow_rate_hz"))
        self._scheduler.set_reasoning_share(self._param("reasoning_share"))
        self._set_standing_instruction(self._param("instruction_text"), INSTRUCTION_PARAMETER)
        self._worker = threading.Thread(
            target=self._inference_loop, args=(self._scheduler,), name="lisa-inference", daemon=True
        )
        self._worker.start()
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        # the result publishers first, then the work feeding them
        result = super().on_activate(state)
        self._subscribe()
        assert self._scheduler is not None
        self._scheduler.resume()
        instruction = self._scheduler.instruction
        self.get_logger().info(
            "Active: serving ~/segment goals"
            + (f" and segmenting '{instruction}' continuously" if instruction else "")
        )
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._unsubscribe()
        if self._scheduler is not None:
            self._scheduler.pause()
            self._scheduler.forget_frame()
            # Targets of before the pause are not to be followed into frames after it.
            self._scheduler.set_follow_target(None)
        self._streams.clear()
        # What was answered before the deactivation is on disk after it (e.g. to unmount it).
        if not self._recorder.flush():
            self.get_logger().warning(
                "Some answered frames are still being written to record_dir (the disk is slow)"
            )
        self.get_logger().info("Inactive: processing stopped (the model stays loaded)")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.release()
        self.get_logger().info("Cleaned up: model unloaded")
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._unsubscribe()
        self.release()
        return super().on_shutdown(state)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.get_logger().error(f"Error in state '{state.label}': releasing everything")
        self._unsubscribe()
        self.release()
        return TransitionCallbackReturn.SUCCESS

    def _configure_failed(self, settings: ModelSettings, reason: str) -> TransitionCallbackReturn:
        self._health.set_load_error(reason)
        self.get_logger().error(
            f"Could not load LISA {settings.describe()}: {reason}. Fix the parameters "
            "(e.g. ros2 param set <node> model <folder or hub id>) and configure again."
        )
        self._publish_diagnostics()
        return TransitionCallbackReturn.FAILURE

    def _autostart(self) -> None:
        assert self._autostart_timer is not None
        self._autostart_timer.cancel()
        self.destroy_timer(self._autostart_timer)
        if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
            self.trigger_activate()

    def destroy_node(self) -> None:
        self._input_node.close(SHUTDOWN_TIMEOUT_S)
        self._core_logs.detach()
        super().destroy_node()

    def release(self) -> None:
        """Stop the inference thread and free the model and the GPU memory it held (idempotent)."""
        if self._scheduler is not None:
            self._scheduler.close()
        if self._worker is not None:
            self._worker.join()
        self._worker = None
        self._recorder.close()  # after the inference thread: nothing is offered any more
        self._scheduler = None
        self._pipeline = None
        for publisher in self._result_publishers:
            self.destroy_lifecycle_publisher(publisher)
        self._result_publishers = []
        self._sessions.clear()
        had_model = self._model is not None
        self._model = None
        self._loaded_settings = None
        host_memory.give_back_free_at_once()
        gc.collect()
        if had_model:
            lisa_model.free_device_memory()

    # --- subscriptions -----------------------------------------------------------------------

    def _subscribe(self) -> None:
        subscribe = self._input_node.subscribe
        if self._param("image_transport") == "compressed":
            # Follow the remapped name of 'image', as image_transport does for its subtopics.
            topic = self.resolve_topic_name("image") + "/compressed"
            image = subscribe(CompressedImage, topic, self._on_image, CAMERA_QOS)
        else:
            image = subscribe(Image, "image", self._on_image, CAMERA_QOS)
        if self._param("depth_transport") == "compressedDepth":
            topic = self.resolve_topic_name("depth") + "/compressedDepth"
            depth = subscribe(CompressedImage, topic, self._streams.depths.add, DEPTH_QOS)
        else:
            depth = subscribe(Image, "depth", self._streams.depths.add, DEPTH_QOS)
        self._inputs = [
            image,
            depth,
            subscribe(CameraInfo, "camera_info", self._streams.camera_infos.add, CAMERA_QOS),
            subscribe(String, "instruction", self._on_instruction, INSTRUCTION_QOS),
        ]
        self.get_logger().info(
            f"Listening to {image.topic_name} ({self._param('image_transport')}) and depth on "
            f"{depth.topic_name} ({self._param('depth_transport')})"
        )

    def _unsubscribe(self) -> None:
        for subscription in self._inputs:
            self._input_node.unsubscribe(subscription)
        self._inputs = []

    def _on_image(self, msg: Image | CompressedImage) -> None:
        scheduler = self._scheduler
        if scheduler is not None:
            received_at = self.get_clock().now().nanoseconds / 1e9  # max_frame_age_s
            scheduler.offer_frame(Frame(msg, self._streams, received_at=received_at))

    def _on_instruction(self, msg: String) -> None:
        self._set_standing_instruction(msg.data, "")

    def _set_standing_instruction(self, text: str, source: str) -> None:
        """Replace (or, with blank ``text``, clear) the continuous-mode instruction: what the
        ``instruction`` topic and the ``instruction_text`` parameter both do, the latest winning."""
        scheduler = self._scheduler
        if scheduler is None:
            return
        if not text.strip():
            if scheduler.instruction is not None:
                self.get_logger().info(
                    f"Standing instruction cleared{source}: continuous mode stopped"
                )
            self._drop_instruction_target(scheduler)
            scheduler.set_instruction(None)
            return
        try:
            instruction = check_instruction(text, self._param("max_instruction_chars"))
        except InputError as error:
            kept = scheduler.instruction
            self._report_input_error(
                "instruction",
                f"standing instruction ignored: {error}"
                + (f" (still segmenting '{kept}')" if kept else ""),
            )
            return
        if instruction != scheduler.instruction:
            self.get_logger().info(f"Standing instruction{source}: '{instruction}'")
            self._drop_instruction_target(scheduler)
            scheduler.set_instruction(instruction)

    # --- inference thread --------------------------------------------------------------------

    def _inference_loop(self, scheduler: WorkScheduler[Frame]) -> None:
        name_this_thread(threading.current_thread().name)  # e.g. for top -H: the model's CPU
        while (job := scheduler.next_job()) is not None:
            try:
                job.run()
            except Exception as error:  # noqa: BLE001 - one bad job must not end the thread
                self.get_logger().error(f"Unexpected error in the inference thread: {error!r}")
            finally:
                scheduler.job_done(job)

    def _frame_job(self, frame: Frame, instruction: str) -> FrameJob:
        assert self._pipeline is not None
        return FrameJob(self._pipeline, frame, instruction, self.job_settings())

    def _follow_job(self, frame: Frame, target: FollowTarget) -> FollowJob:
        assert self._pipeline is not None
        return FollowJob(self._pipeline, frame, target, self.job_settings())

    # --- following (inference thread) ----------------------------------------------------------

    def _on_reasoned(self, answer: Answer, is_goal: bool) -> None:
        """Make a fresh answer the target to follow: a standing instruction's until its next
        answer, a goal's for follow_goal_seconds."""
        scheduler = self._scheduler
        if scheduler is None:
            return
        result = answer.result
        followable = len(result.mask_logits) > 0 and result.followable
        target = FollowTarget(result, answer.header, answer.instruction, from_goal=is_goal)
        if not is_goal:
            # No mask in the new answer: the old one's targets are not to be followed either.
            scheduler.set_follow_target(target if followable else None)
            return
        seconds = self._param("follow_goal_seconds")
        if followable and seconds > 0:
            scheduler.set_follow_target(target, seconds)

    def _on_follow_degraded(self, target: FollowTarget, why: str) -> None:
        scheduler = self._scheduler
        if scheduler is None:
            return
        if target.from_goal or scheduler.instruction is None:
            self.get_logger().info(
                f"Stopped following '{target.instruction}': {why} (send the goal again)"
            )
            if scheduler.follow_target is target:
                scheduler.set_follow_target(None)
            return
        self.get_logger().debug(f"Followed masks no longer hold ({why}): reasoning again")
        scheduler.request_reasoning()

    @staticmethod
    def _drop_instruction_target(scheduler: WorkScheduler[Frame]) -> None:
        """A changed or cleared instruction's old answer is not to be followed any more."""
        target = scheduler.follow_target
        if target is not None and not target.from_goal:
            scheduler.set_follow_target(None)

    # --- parameters, diagnostics -------------------------------------------------------------

    def _param(self, name: str) -> Any:
        return self.get_parameter(name).value

    # --- what the action server needs (segment_action.GoalHost) ---------------------------------

    @property
    def scheduler(self) -> WorkScheduler[Frame] | None:
        return self._scheduler

    @property
    def pipeline(self) -> Pipeline | None:
        return self._pipeline

    @property
    def sessions(self) -> SessionStore:
        return self._sessions

    def busy_policy(self) -> str:
        return self._param("busy_policy")

    def max_queued_goals(self) -> int:
        return self._param("max_queued_goals")

    def job_settings(self) -> JobSettings:
        return JobSettings(
            max_new_tokens=self._param("max_new_tokens"),
            publish_partial=self._param("publish_partial"),
            limits=ImageLimits(self._param("min_image_side"), self._param("max_image_side")),
            max_instruction_chars=self._param("max_instruction_chars"),
            max_frame_age_s=self._param("max_frame_age_s"),
            follow=FollowSettings(
                min_score_ratio=self._param("follow_min_score_ratio"),
                max_area_change=self._param("follow_max_area_change"),
                max_shift=self._param("follow_max_shift"),
            ),
            depth=DepthSettings(
                max_skew_s=self._param("depth_max_skew_s"),
                unit_scale=self._param("depth_unit_scale"),
                min_m=self._param("depth_min_m"),
                max_m=self._param("depth_max_m"),
                erode_px=self._param("depth_erode_px"),
            ),
        )

    def _on_set_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        values = {parameter.name: parameter.value for parameter in parameters}
        reason = validate(values.items()) or validate_together(
            lambda name: values.get(name, self._param_or_none(name))
        )
        if reason is not None:
            self.get_logger().warning(f"Parameter value refused: {reason}")
            return SetParametersResult(successful=False, reason=reason)
        if "max_rate_hz" in values and self._scheduler is not None:
            self._scheduler.set_max_rate(values["max_rate_hz"])
        if "follow_rate_hz" in values and self._scheduler is not None:
            self._scheduler.set_follow_rate(values["follow_rate_hz"])
        if "reasoning_share" in values and self._scheduler is not None:
            self._scheduler.set_reasoning_share(values["reasoning_share"])
        if "max_sessions" in values:
            self._sessions.set_capacity(values["max_sessions"])
        if "instruction_text" in values:
            self._set_standing_instruction(values["instruction_text"], INSTRUCTION_PARAMETER)
        if "record_dir" in values:
            self._recorder.set_folder(record_folder(values["record_dir"]))
        if self._loaded_settings is not None:
            for name in values.keys() & MODEL_PARAMETERS:
                self.get_logger().info(
                    f"{name} set to {values[name]!r}: the loaded model serves until the next "
                    "cleanup and configure"
                )
        return SetParametersResult(successful=True)

    def _param_or_none(self, name: str) -> Any:
        return self.get_parameter(name).value if self.has_parameter(name) else None

    def is_active(self) -> bool:
        return self._state_machine.current_state[0] == StateMsg.PRIMARY_STATE_ACTIVE

    def state_label(self) -> str:
        """The lifecycle state, e.g. 'active' or, during a transition, 'configuring'."""
        return self._state_machine.current_state[1]

    def in_transition(self) -> bool:
        """Whether a lifecycle transition (e.g. a model load in configure) is running."""
        return self._state_machine.current_state[0] >= StateMsg.TRANSITION_STATE_CONFIGURING

    def interrupted_work(self) -> str:
        """What a shutdown now would interrupt, for the log ('' when nothing runs)."""
        if self.in_transition():
            state = self.state_label()
            return "the model load (configuring)" if state == "configuring" else f"'{state}'"
        scheduler = self._scheduler
        if scheduler is None:
            return ""
        stats = scheduler.stats()
        waiting = f" ({stats.goals_waiting} more goals waiting)" if stats.goals_waiting else ""
        running = {
            "goal": "the answer to a goal",
            "frame": f"reasoning on a camera frame for '{scheduler.instruction}'",
            "follow": "following the last answer's masks",
        }.get(stats.running, "")
        return running + waiting if running else waiting.strip(" ()")

    def not_ready_reason(self) -> str:
        state = self.state_label()
        load_error = self._health.load_error
        if load_error and self._model is None:
            return (
                f"the model is not loaded ({load_error}); fix the parameters and configure the node"
            )
        if state == "inactive":
            return "the node is inactive: activate it (lifecycle transition 'activate')"
        return f"the node is {state}: configure and activate it (or start it with autostart:=true)"

    def _report_input_error(self, cause: str, message: str) -> None:
        """A problem with topic input (``cause``: image, depth, camera_info, instruction): a WARN
        line, once per cause in a while (see diagnostics), and a WARN on /diagnostics at once."""
        if self._health.input_error(cause, message):
            self.get_logger().warning(message)
        self._publish_diagnostics()

    def _publish_diagnostics(self) -> None:
        scheduler = self._scheduler
        pipeline = self._pipeline
        loaded = self._loaded_settings
        snapshot = HealthSnapshot(
            lifecycle_state=self.state_label(),
            model=loaded.model if loaded is not None else "",
            adapter=loaded.adapter if loaded is not None else "",
            pending_parameters=loaded.changed(ModelSettings(self)) if loaded is not None else [],
            device=str(self._model.device)
            if self._model is not None
            else (self._param("device") or "auto"),
            instruction=scheduler.instruction if scheduler is not None else None,
            stats=scheduler.stats() if scheduler is not None else None,
            last_inference_seconds=pipeline.last_inference_seconds
            if pipeline is not None
            else None,
            depth_silence_s=self._streams.depths.seconds_since_last() if self._inputs else None,
            last_followed=pipeline.last_followed if pipeline is not None else False,
            last_reasoning_age=pipeline.last_reasoning_age if pipeline is not None else 0.0,
            recording=self._recorder.stats(),
            image_silence_s=self._image_silence_s(scheduler),
            goal_outcomes=self._action_server.tally.outcomes(),
            goal_results=self._action_server.tally.codes(),
        )
        try:
            self._diagnostics.publish(
                self._health.diagnostics(snapshot, self.get_clock().now().to_msg())
            )
        except Exception as error:  # noqa: BLE001 - e.g. during shutdown
            self.get_logger().debug(f"diagnostics not published: {error}")

    def _image_silence_s(self, scheduler: WorkScheduler[Frame] | None) -> float | None:
        """Seconds since the last colour frame; None before the first since activation."""
        frame = scheduler.latest_frame() if scheduler is not None and self._inputs else None
        return None if frame is None else time.perf_counter() - frame.received


def spin(node: LisaNode, shutdown: ShutdownRequest) -> bool:
    """Spin ``node`` on a multi-threaded executor until ``shutdown`` is requested (Ctrl-C or
    SIGTERM), then stop its work in order while the context is still valid.

    The executor spins on a thread of its own: the main thread only waits for the request, so the
    signal handler never interrupts rclpy (see :mod:`~lisa_ros.node.shutdown`). Returns False when
    a lifecycle transition was still running (a model load cannot be interrupted): its executor
    thread is left behind, and the caller should exit without it.
    """
    # Threads for callbacks only: inference has its own thread, and waiting goals are coroutines
    # that hold no thread, so a few threads keep topics, cancel and lifecycle services responsive.
    executor = MultiThreadedExecutor(num_threads=4, context=node.context)
    executor.add_node(node)
    spinner = threading.Thread(
        target=_spin_executor, args=(executor, shutdown), name="lisa-executor", daemon=True
    )
    spinner.start()
    reason = shutdown.wait()
    interrupted = node.interrupted_work()
    node.get_logger().info(
        f"{reason}: shutting down"
        + (f", interrupting {interrupted}" if interrupted else " (nothing was running)")
    )
    if node.in_transition():
        return False
    # Inference first, while the executor still spins: an answered goal's result still goes out.
    node.release()
    executor.shutdown(timeout_sec=SHUTDOWN_TIMEOUT_S)
    spinner.join(SHUTDOWN_TIMEOUT_S)
    return not spinner.is_alive()


def _spin_executor(executor: MultiThreadedExecutor, shutdown: ShutdownRequest) -> None:
    name_this_thread(threading.current_thread().name)
    try:
        executor.spin()
    except ExternalShutdownException:  # the context was shut down by someone else
        pass
    finally:
        shutdown.request("the executor stopped")


def run(make_node: Callable[[], LisaNode], args: list[str] | None = None) -> None:
    """Create the node with ``make_node`` and spin it until Ctrl-C or SIGTERM, then exit with
    status 0; exit with status 1 and the reason when it cannot start (e.g. an invalid value in the
    parameters file)."""
    shutdown = install_shutdown_request()  # a signal from now on is served in order
    # Models loaded again on configure must not pile up in the allocator's arenas. The
    # ``lisa_node`` executable has made these settings already, before its imports started
    # threads (entry_point); other callers get them from here.
    host_memory.return_large_blocks_on_free()
    # The node's own image work (conversion, overlay, 3D) is a few passes over one frame: on
    # OpenCV's thread pool it took twice the CPU time for little or no less wall-clock time.
    cv2.setNumThreads(1)
    # Not rclpy's handlers: they shut the context down under the running executor.
    rclpy.init(
        args=args if args is not None else sys.argv,
        signal_handler_options=SignalHandlerOptions.NO,
    )
    try:
        node = make_node()
    except Exception as error:  # noqa: BLE001 - one line saying why, not a traceback
        print(f"lisa_node: cannot start: {error}", file=sys.stderr)
        rclpy.try_shutdown()
        sys.exit(1)
    finished = False
    try:
        finished = spin(node, shutdown)
    finally:
        shutdown.ignore_further()
        if not finished:
            node.get_logger().warning(
                f"Still {node.state_label()}: exiting without waiting for it to end"
            )
        node.destroy_node()
        rclpy.try_shutdown()
    if not finished:
        # Ctrl-C during a model load must not wait minutes for the load: Python would join the
        # executor thread that runs it at exit, so leave at once (nothing is left to save).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def main(args: list[str] | None = None) -> None:
    run(LisaNode, args)


if __name__ == "__main__":
    main()
