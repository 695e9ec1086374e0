"""A DDS graph that stays on this machine: the environment the graph tests and the benchmarks share.

- ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``: participants discover only peers on this machine;
- the Fast DDS profile ``fastdds_shm_profile.xml`` (one shared-memory transport with a 32 MiB
  segment, built-in UDP transports off): nothing leaves the machine, and camera frames of
  1280x720 fit the segment (Fast DDS's default one drops them);
- a ``ROS_DOMAIN_ID`` of its own, so that a run does not meet a real robot's graph (0) or another
  run. The graph tests reserve one per session (test/graph/ros_harness.py); a benchmark takes
  the one it is given or picks one from its process id (:func:`use_local_graph`).

Every process of one graph must have the same settings, or they never discover each other.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

FASTDDS_PROFILE = Path(__file__).with_name("fastdds_shm_profile.xml")

# Where a benchmark picks its domain when ROS_DOMAIN_ID is not set: high ids, which a robot's graph
# rarely uses. (Fast DDS derives its ports from the id and supports ids up to 232.)
_BENCHMARK_DOMAINS = (150, 232)


def local_graph(domain_id: int | str) -> dict[str, str]:
    """The environment variables that put a ROS process on this machine's graph ``domain_id``."""
    if not FASTDDS_PROFILE.is_file():
        raise FileNotFoundError(f"the Fast DDS profile {FASTDDS_PROFILE} is missing")
    return {
        "ROS_DOMAIN_ID": str(domain_id),
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
        "FASTDDS_DEFAULT_PROFILES_FILE": str(FASTDDS_PROFILE),
    }


def use_local_graph() -> None:
    """Put this process (and the children it starts) on a local graph: the domain of
    ``ROS_DOMAIN_ID`` if set, else one picked from the process id. For the benchmarks, which run
    their nodes in this process or start them with ``os.environ``."""
    domain_id = os.environ.get("ROS_DOMAIN_ID") or random.Random(os.getpid()).randint(
        *_BENCHMARK_DOMAINS
    )
    os.environ.update(local_graph(domain_id))
