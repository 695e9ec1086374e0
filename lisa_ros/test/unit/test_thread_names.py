"""Threads named for the OS (top -H, /proc/PID/task): what the CPU benchmark tells them apart by."""

from __future__ import annotations

import sys
import threading

import pytest

from lisa_ros.node.thread_names import name_this_thread

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")


def os_thread_name(native_id: int) -> str | None:
    """The OS name of a thread of this process (``threading.get_native_id()``), where readable."""
    try:
        with open(f"/proc/self/task/{native_id}/comm", encoding="utf-8") as comm:
            return comm.read().strip()
    except OSError:
        return None


def test_a_thread_gets_its_name_cut_to_what_the_kernel_keeps() -> None:
    seen: dict[str, object] = {}

    def run() -> None:
        seen["named"] = name_this_thread("lisa-inference-and-more")
        seen["name"] = os_thread_name(threading.get_native_id())

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert seen == {"named": True, "name": "lisa-inference-"}
    # Only the calling thread is renamed.
    assert os_thread_name(threading.get_native_id()) != "lisa-inference-"


def test_a_thread_that_is_not_there_has_no_name() -> None:
    assert os_thread_name(2**22 + 12345) is None
