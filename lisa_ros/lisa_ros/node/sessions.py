"""Conversations for follow-up goals: the frame of the first turn and the turns so far.

A goal with a ``session_id`` seen before is a follow-up question about the same frame, so the
session keeps that frame (already converted to RGB, with its header, camera info and depth) and the
(instruction, answer) pairs LISA needs as history. Sessions are bounded: the least recently used is
forgotten first, so a client inventing a new id per goal cannot make the node grow without limit.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Session", "SessionStore"]


@dataclass
class Session:
    image_rgb: np.ndarray
    header: Any  # std_msgs/Header of the first turn's frame
    camera_info: Any  # sensor_msgs/CameraInfo of that frame (empty when unknown)
    depth: Any  # its depth (a depth.DepthPartner, decoded once for all turns)
    history: list[tuple[str, str]] = field(default_factory=list)


class SessionStore:
    """Thread-safe LRU map ``session_id -> Session`` holding at most ``capacity`` sessions."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, session_id: str) -> Session | None:
        with self._lock:
            session = self._sessions.get(session_id)
            if session is not None:
                self._sessions.move_to_end(session_id)
            return session

    def put(self, session_id: str, session: Session) -> None:
        with self._lock:
            self._sessions[session_id] = session
            self._sessions.move_to_end(session_id)
            self._trim()

    def set_capacity(self, capacity: int) -> None:
        with self._lock:
            self._capacity = capacity
            self._trim()

    def clear(self) -> None:
        with self._lock:
            self._sessions.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)

    def _trim(self) -> None:
        while len(self._sessions) > self._capacity:
            self._sessions.popitem(last=False)
