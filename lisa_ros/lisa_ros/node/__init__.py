"""The lisa ROS 2 node (lisa_node) and its parts; the client lisa-ask lives here too."""

import os
import sys

if os.path.basename(sys.argv[0]) == "lisa_node":
    # The lisa_node executable (ros2 run, ros2 launch): its imports take a second, and a Ctrl-C
    # then must wait for them, not end the process with a KeyboardInterrupt traceback (exit -2).
    from . import shutdown

    shutdown.install()
