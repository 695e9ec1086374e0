"""Frames reuse memory: lisa_node's allocator settings (lisa_ros.model.host_memory).

rclpy takes each 1280x720 rgb8 frame (2.7 MB) into a buffer of its own and then into the Python
message; both are freed before the next frame (the overlay and the output messages of an answered
frame likewise). With the mmap threshold fixed (the reload fix), glibc gave that memory back at
once and every frame faulted its pages in again, which cost more CPU than the work on the frame.
Counted in page faults, not seconds: the count does not
depend on the machine's speed or load. Each setting runs in a fresh interpreter (glibc's settings
are process wide), on the main thread and on a second one: a thread with an arena of its own, as
the executor's threads (and DDS's) have, is where the pages were given back.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from lisa_ros.model import host_memory

FRAMES = 40
PAGES_PER_FRAME = 1280 * 720 * 3 // 4096  # 675

TAKE_FRAMES = textwrap.dedent(
    """
    import resource, sys, threading
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import Image
    from lisa_ros.model import host_memory

    setting = sys.argv[1]
    if setting == "node":  # as a node with a model loaded
        assert host_memory.return_large_blocks_on_free()
        assert host_memory.keep_free_for_reuse()
    elif setting == "mmap threshold alone":  # the reload fix's setting before this one
        assert host_memory._glibc().mallopt(host_memory._M_MMAP_THRESHOLD, 4 * 1024 * 1024) == 1
    frames = int(sys.argv[2])
    wire = serialize_message(
        Image(height=720, width=1280, encoding="rgb8", step=3840, data=bytes(1280 * 720 * 3))
    )

    def faults_per_frame(out):
        for _ in range(5):
            deserialize_message(wire, Image)
        before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
        for _ in range(frames):
            deserialize_message(wire, Image)  # taken, then dropped, as a frame nobody uses
        out.append((resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before) / frames)

    results = []
    faults_per_frame(results)
    worker = threading.Thread(target=faults_per_frame, args=(results,))
    worker.start()
    worker.join()
    print(*results)
    """
)


def faults_per_frame(setting: str) -> tuple[float, float]:
    """Minor page faults per frame taken, on the main thread and on a second thread."""
    output = subprocess.run(
        [sys.executable, "-c", TAKE_FRAMES, setting, str(FRAMES)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout.split()
    main, worker = (float(value) for value in output)
    return main, worker


@pytest.mark.skipif(host_memory._glibc() is None, reason="glibc's allocator settings")
def test_taking_frames_faults_no_fresh_pages_with_the_node_settings() -> None:
    # Without the trim threshold, each frame faults its pages in again (2000 faults a frame on
    # the second thread, measured): the test can fail.
    assert faults_per_frame("mmap threshold alone")[1] > PAGES_PER_FRAME
    main, worker = faults_per_frame("node")
    assert main < 0.05 * PAGES_PER_FRAME
    assert worker < 0.05 * PAGES_PER_FRAME
