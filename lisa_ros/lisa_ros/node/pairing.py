"""Pairing camera frames with their camera_info and depth images by stamp.

A camera driver publishes the colour image, its camera_info and (an RGB-D camera) the depth image
registered to it on separate topics, each with the stamp of the exposure, and in any order. The node
keeps the last few messages of each stream in a :class:`StampedBuffer` and looks a frame's stamp up
when the frame is processed, on the inference thread; a depth image that comes after the frame is
taken is still caught (:meth:`StampedBuffer.hold`). The partner is the message of the nearest
stamp: an exact match, as message_filters' ExactTime policy would give for a driver that stamps all
streams alike, else the closest one, as its ApproximateTime policy would; a depth image further
away than ``depth_max_skew_s`` is no partner. This one mechanism serves both streams:
message_filters is not a dependency, and a frame that is never processed (frames are dropped, never
queued) costs no pairing work.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Sequence, TypeVar

from builtin_interfaces.msg import Time
from sensor_msgs.msg import CameraInfo

__all__ = ["CameraStreams", "Candidates", "StampedBuffer", "nanoseconds"]

M = TypeVar("M")


def nanoseconds(stamp: Time) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


# How many frames at once may wait for a partner stamped at or after them (see StampedBuffer.hold);
# beyond that, the oldest waiting frame keeps only what was held when it asked.
MAX_WAITING = 16


class Candidates(Generic[M]):
    """A frame's partner candidates (see :meth:`StampedBuffer.hold`)."""

    def __init__(self, stamp_ns: int, held: list[M]) -> None:
        self.stamp_ns = stamp_ns
        self.held = held
        self.first_at_or_after: M | None = None  # set by the buffer when it arrives

    def messages(self) -> list[M]:
        late = self.first_at_or_after
        return self.held if late is None else [*self.held, late]


class StampedBuffer(Generic[M]):
    """The last ``size`` messages of one stream (anything with ``header.stamp``), thread-safe."""

    def __init__(self, size: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._messages: deque[M] = deque(maxlen=size)
        self._lock = threading.Lock()
        self._clock = clock
        self._last_received: float | None = None
        self._waiting: deque[Candidates[M]] = deque(maxlen=MAX_WAITING)

    def add(self, msg: M) -> None:
        with self._lock:
            self._messages.append(msg)
            self._last_received = self._clock()
            if self._waiting:
                stamp_ns = nanoseconds(msg.header.stamp)
                for candidates in [c for c in self._waiting if stamp_ns >= c.stamp_ns]:
                    candidates.first_at_or_after = msg
                    self._waiting.remove(candidates)

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()
            self._last_received = None
            self._waiting.clear()

    def seconds_since_last(self) -> float | None:
        """Seconds since a message last arrived; None when none has since the last clear."""
        with self._lock:
            last = self._last_received
        return None if last is None else self._clock() - last

    def nearest(
        self, stamp: Time, max_skew_s: float | None = None, also: Sequence[M] = ()
    ) -> M | None:
        """The message whose stamp is nearest to ``stamp`` (the newer one on a tie) among those
        held and ``also`` (a frame's :meth:`hold`), or None when there is none or the nearest
        is more than ``max_skew_s`` seconds away."""
        with self._lock:
            messages = [*also, *self._messages]
        if not messages:
            return None
        wanted = nanoseconds(stamp)

        def distance(msg: Any) -> tuple[int, int]:
            stamp_ns = nanoseconds(msg.header.stamp)
            return abs(stamp_ns - wanted), -stamp_ns

        best = min(messages, key=distance)
        if max_skew_s is not None and distance(best)[0] > max_skew_s * 1e9:
            return None
        return best

    def hold(self, stamp: Time) -> Candidates[M]:
        """A frame's candidates for a later :meth:`nearest` (``also=candidates.messages()``): the
        messages held now and the first to arrive stamped at ``stamp`` or later (which, with the
        newest held, brackets the stamp: nothing later can be nearer). A long inference lets
        newer messages push the frame's own partner out of the buffer before the lookup, and an
        idle node takes a frame before its partner, published a moment after it, has come."""
        with self._lock:
            held = list(self._messages)
            stamp_ns = nanoseconds(stamp)
            candidates = Candidates(stamp_ns, held)
            if not any(nanoseconds(m.header.stamp) >= stamp_ns for m in held):
                self._waiting.append(candidates)
            return candidates

    def newest(self) -> M | None:
        with self._lock:
            return self._messages[-1] if self._messages else None


def _ignore(cause: str, message: str) -> None:
    pass


@dataclass
class CameraStreams:
    """The streams that accompany the colour images of one camera: calibration and depth, and
    ``report(cause, message)``, told when they cannot serve a frame (e.g. a depth image of the
    wrong size, a camera_info with K all zeros): the node logs and diagnoses it.

    Depth images are large (1.8 MB at 1280x720): the buffer holds about half a second of a 30 Hz
    stream, longer than a frame waits before the inference thread takes it.
    """

    camera_infos: StampedBuffer[CameraInfo] = field(default_factory=lambda: StampedBuffer(30))
    depths: StampedBuffer[Any] = field(default_factory=lambda: StampedBuffer(15))
    report: Callable[[str, str], None] = _ignore

    def camera_info_for(self, stamp: Time) -> CameraInfo:
        """The camera info nearest to ``stamp`` (calibration rarely changes: no skew limit), or an
        empty one for a camera that publishes none."""
        info = self.camera_infos.nearest(stamp)
        return info if info is not None else CameraInfo()

    def clear(self) -> None:
        self.camera_infos.clear()
        self.depths.clear()
