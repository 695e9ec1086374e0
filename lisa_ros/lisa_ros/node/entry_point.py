"""The ``lisa_node`` executable (``ros2 run``, ``ros2 launch``): shutdown handlers, then the rest.

Importing rclpy, the messages and the node takes about a second. A Ctrl-C in that window must end
the process like any other (status 0, see :mod:`lisa_ros.node.shutdown`), not with Python's
KeyboardInterrupt traceback, which ``ros2 launch`` reports as "process has died". So this module
imports nothing heavy before the handlers are installed.
"""

from __future__ import annotations

from . import shutdown


def main(args: list[str] | None = None) -> None:
    shutdown.install()
    # Before the imports: they start threads that would otherwise get heap arenas of their own.
    from ..model import host_memory

    host_memory.return_large_blocks_on_free()
    from .lisa_node import main as run_node

    run_node(args)


if __name__ == "__main__":  # python -m lisa_ros.node.entry_point (e.g. benchmarks.node --cpu)
    main()
