"""A real ROS 2 graph for tests: separate processes that see each other and nothing else.

Every process of a test run (the pytest process and the children it starts) gets the same
environment from :func:`ros_environment`:

- ``ROS_DOMAIN_ID``: one per test session, reserved with a lock file so parallel runs on this
  machine never share a graph (:func:`reserve_domain_id`);
- ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` and the Fast DDS profile of ``testbed.local_dds``
  (one shared-memory transport with a 32 MiB segment, built-in UDP transports off): no test
  traffic leaves the machine, and camera frames are not dropped;
- ``AMENT_PREFIX_PATH`` starting with this venv's prefix (``get_package_share_directory``),
  ``ROS_LOG_DIR`` in the session's temporary folder, unbuffered Python output.

How to write a graph test (e.g. for lisa_node; graph/conftest.py registers this module's fixtures)::

    def test_goal_gets_an_answer(ros_processes, ros_node):
        lisa = ros_processes.start_console_script("lisa_node", "--ros-args", "-p", "device:=cpu")
        client = ActionClient(ros_node.node, Segment, "/lisa/segment")
        assert client.wait_for_server(timeout_sec=60), lisa.output
        goal_handle = ros_node.wait_for_future(client.send_goal_async(goal), 10, "goal acceptance")
        result = ros_node.wait_for_future(goal_handle.get_result_async(), 120, "the result").result
        assert result.error_code == Segment.Result.SUCCESS, lisa.output

- ``ros_processes`` (per test) starts children with the harness environment
  (:meth:`RosProcesses.start_python`, :meth:`~RosProcesses.start_console_script`,
  :meth:`~RosProcesses.start`) and stops every one of them at teardown: SIGINT first (rclpy
  shuts down cleanly), SIGKILL after a grace period. Their output goes to a log file: read it
  with ``process.output`` (put it in assertion messages), wait for a line with
  ``process.wait_for_output(regex, timeout)``; at teardown it is printed, so a failing test shows
  what every child said.
- ``ros_node`` (per test) is an rclpy node living in the pytest process, in its own
  ``rclpy.Context``, spun by a background thread: create publishers, subscriptions and action
  clients on ``ros_node.node`` and wait with :meth:`RclpyNode.wait_until` /
  :meth:`RclpyNode.wait_for_future` (never ``rclpy.spin_*`` from the test: the thread spins).
- ``ros_env`` (per session) is the environment itself; it is also applied to ``os.environ`` of the
  pytest process, because Fast DDS reads its profile when the process creates its first
  participant. So do not call ``rclpy.init()`` in a test without these fixtures.

Shared-memory discovery needs no network, but a wait for discovery is still needed: wait until
``publisher.get_subscription_count()`` (or ``client.wait_for_server``) says the peer is there
before sending anything that must not be lost.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import pytest

from testbed.local_dds import local_graph

# Fast DDS derives its ports from the domain id and supports ids up to 232; 0 is what a real ROS
# graph on the machine most likely uses, so tests stay off it.
_FIRST_TEST_DOMAIN, _LAST_TEST_DOMAIN = 1, 232
_DOMAIN_LOCK_DIR = Path(tempfile.gettempdir()) / "lisa_ros_test_domains"

# Settings a developer's shell may carry that would change what the harness sets up.
_CONFLICTING_VARIABLES = (
    "ROS_LOCALHOST_ONLY",  # deprecated; Kilted ignores it, so it only misleads
    "ROS_STATIC_PEERS",
    "FASTRTPS_DEFAULT_PROFILES_FILE",
    "FASTDDS_BUILTIN_TRANSPORTS",
    "RMW_FASTRTPS_USE_QOS_FROM_XML",
    "CYCLONEDDS_URI",
)


def reserve_domain_id() -> tuple[int, IO[str]]:
    """Reserve a ROS domain id no other harness user on this machine holds.

    Returns the id and the open lock file: the reservation lasts until that file is closed (or
    the process exits). Ids are tried from a pid-dependent start so concurrent runs rarely probe
    the same ones.
    """
    _DOMAIN_LOCK_DIR.mkdir(parents=True, exist_ok=True)
    span = _LAST_TEST_DOMAIN - _FIRST_TEST_DOMAIN + 1
    start = os.getpid() % span
    for offset in range(span):
        domain_id = _FIRST_TEST_DOMAIN + (start + offset) % span
        lock = open(_DOMAIN_LOCK_DIR / f"{domain_id}.lock", "w")  # noqa: SIM115 (held by caller)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        return domain_id, lock
    raise RuntimeError(
        f"every ROS domain id {_FIRST_TEST_DOMAIN}..{_LAST_TEST_DOMAIN} is held by another test run"
    )


def ros_environment(
    domain_id: int, log_dir: Path, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Return ``base`` (default ``os.environ``) with the harness's ROS settings for
    ``domain_id``."""
    env = dict(os.environ if base is None else base)
    for name in _CONFLICTING_VARIABLES:
        env.pop(name, None)
    ament_prefixes = [sys.prefix] + [
        p for p in env.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p and p != sys.prefix
    ]
    env.update(local_graph(domain_id))
    env.update(
        RMW_IMPLEMENTATION="rmw_fastrtps_cpp",
        AMENT_PREFIX_PATH=os.pathsep.join(ament_prefixes),
        ROS_LOG_DIR=str(log_dir),
        PYTHONUNBUFFERED="1",
        RCUTILS_COLORIZED_OUTPUT="0",
    )
    return env


# --- child processes ----------------------------------------------------------------------------


class RosProcess:
    """A child process of a graph test, its output (stdout and stderr) going to a log file."""

    def __init__(
        self,
        args: list[str],
        env: Mapping[str, str],
        log_path: Path,
        name: str,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.args = args
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 (closed in stop())
        # A session of its own: a terminal's Ctrl-C does not hit it before the harness stops it,
        # and SIGKILL can reach anything it started.
        self.popen = subprocess.Popen(
            args,
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def running(self) -> bool:
        return self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    @property
    def output(self) -> str:
        """Everything the process has written so far."""
        return self.log_path.read_bytes().decode(errors="replace")

    def describe(self) -> str:
        status = "running" if self.running else f"exited with {self.returncode}"
        return (
            f"--- {self.name} (pid {self.pid}, {status}): {' '.join(self.args)}\n"
            f"{self.output}--- end of {self.name}"
        )

    def wait_for_output(self, pattern: str, timeout: float) -> re.Match[str]:
        """Wait until the output matches the regular expression ``pattern``; fail the test with
        the output if the process exits first or ``timeout`` seconds pass."""
        regex = re.compile(pattern, re.MULTILINE)
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self.output)
            if match:
                return match
            if not self.running:
                pytest.fail(f"{self.name} exited before printing /{pattern}/\n{self.describe()}")
            if time.monotonic() > deadline:
                pytest.fail(
                    f"{self.name} did not print /{pattern}/ within {timeout} s\n{self.describe()}"
                )
            time.sleep(0.05)

    def wait(self, timeout: float) -> int:
        """Wait for the process to exit by itself and return its exit code."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.name} still running after {timeout} s\n{self.describe()}")

    def send_signal(self, signum: int) -> None:
        if self.running:
            self.popen.send_signal(signum)

    def stop(self, grace: float = 10.0) -> int:
        """SIGINT (what Ctrl-C sends: rclpy shuts down cleanly), then SIGKILL to the whole
        session after ``grace`` seconds. Returns the exit code."""
        if self.running:
            self.popen.send_signal(signal.SIGINT)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                self._kill_session()
                self.popen.wait()
        self._kill_session()  # children it left behind, if any
        self._log.close()
        return self.popen.returncode

    def _kill_session(self) -> None:
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


class RosProcesses:
    """Starts children with the harness environment and stops them all in :meth:`stop_all`."""

    def __init__(self, env: Mapping[str, str], log_dir: Path) -> None:
        self.env = dict(env)
        self.log_dir = log_dir
        self.processes: list[RosProcess] = []

    def start(
        self,
        *args: str,
        name: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> RosProcess:
        """Start the command ``args`` in the folder ``cwd`` (default: this process's); ``env`` adds
        to (or overrides) the harness environment."""
        name = name or Path(args[0]).name
        log_path = (
            self.log_dir / f"{len(self.processes):02d}-{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.log"
        )
        process = RosProcess(list(args), {**self.env, **(env or {})}, log_path, name, cwd)
        self.processes.append(process)
        return process

    def start_python(
        self,
        *args: str,
        name: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> RosProcess:
        """Start this venv's python with ``args``: a script path, or ``"-m", "module"``, and its
        arguments. (The venv's own interpreter is what sets the ROS library path.) ``-m`` finds
        modules of ``cwd``: ``cwd=testbed.PACKAGE`` for ``testbed`` and ``benchmarks``."""
        default_name = args[1] if args[:1] == ("-m",) and len(args) > 1 else Path(args[0]).stem
        return self.start(sys.executable, *args, name=name or default_name, env=env, cwd=cwd)

    def start_console_script(
        self, script: str, *args: str, env: Mapping[str, str] | None = None
    ) -> RosProcess:
        """Start a console script of this venv (``lisa_node``, ``lisa-ask``) with ``args``."""
        path = Path(sys.executable).parent / script
        if not path.exists():
            found = shutil.which(script)
            if found is None:
                pytest.fail(
                    f"console script {script!r} not found next to {sys.executable} nor on PATH: "
                    "install lisa_ros into the venv (make setup)"
                )
            path = Path(found)
        return self.start(str(path), *args, name=script, env=env)

    def stop_all(self, grace: float = 10.0) -> None:
        """Stop the processes, the last started first (clients before the servers they use)."""
        for process in reversed(self.processes):
            process.stop(grace)


# --- an rclpy node inside the test process -----------------------------------------------------


class RclpyNode:
    """An rclpy node of the test process, in a private context, spun by a background thread.

    ``env`` (the harness environment) is applied to ``os.environ`` before ``rclpy.init``: the
    middleware reads its settings from there.
    """

    def __init__(self, env: Mapping[str, str], name: str = "lisa_test") -> None:
        import rclpy
        from rclpy.executors import MultiThreadedExecutor
        from rclpy.signals import SignalHandlerOptions

        os.environ.update(env)
        self.context = rclpy.Context()
        # No rclpy signal handlers: Ctrl-C must keep interrupting pytest as usual.
        rclpy.init(
            context=self.context,
            domain_id=int(env["ROS_DOMAIN_ID"]),
            signal_handler_options=SignalHandlerOptions.NO,
        )
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = MultiThreadedExecutor(num_threads=2, context=self.context)
        self.executor.add_node(self.node)
        self._spin_error: BaseException | None = None
        self._thread = threading.Thread(target=self._spin, name=f"{name}-executor", daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        from rclpy.executors import ExternalShutdownException

        try:
            self.executor.spin()
        except ExternalShutdownException:
            pass
        except BaseException as error:  # reported by the next wait
            self._spin_error = error

    def wait_until(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        """Wait until ``predicate()`` is truthy and return its value; fail the test after
        ``timeout`` seconds, saying ``what`` was awaited."""
        deadline = time.monotonic() + timeout
        while True:
            if self._spin_error is not None:
                raise RuntimeError("the test node's executor failed") from self._spin_error
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout} s waiting for {what}")
            time.sleep(0.01)

    def wait_for_future(self, future: Any, timeout: float, what: str) -> Any:
        """Wait for an rclpy future (goal acceptance, result, service response) and return its
        result, re-raising its exception."""
        self.wait_until(future.done, timeout, what)
        if future.exception() is not None:
            raise future.exception()
        return future.result()

    def wait_for_subscribers(self, publisher: Any, count: int = 1, timeout: float = 10.0) -> None:
        self.wait_until(
            lambda: publisher.get_subscription_count() >= count,
            timeout,
            f"{count} subscriber(s) of {publisher.topic_name}",
        )

    def wait_for_publishers(self, subscription: Any, count: int = 1, timeout: float = 10.0) -> None:
        self.wait_until(
            lambda: subscription.get_publisher_count() >= count,
            timeout,
            f"{count} publisher(s) of {subscription.topic_name}",
        )

    def close(self) -> None:
        import rclpy

        self.executor.shutdown(timeout_sec=5.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self._thread.join(timeout=5.0)


# --- pytest fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def ros_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The harness environment of this test session, also applied to the pytest process."""
    domain_id, lock = reserve_domain_id()
    env = ros_environment(domain_id, tmp_path_factory.mktemp("ros_log"))
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        yield env
    finally:
        os.environ.clear()
        os.environ.update(saved)
        lock.close()


@contextmanager
def started_processes(env: dict[str, str], folder: Path) -> Iterator[RosProcesses]:
    """Children started in this block are stopped at its end, and what they printed is shown
    with a failing test's report."""
    processes = RosProcesses(env, folder)
    try:
        yield processes
    finally:
        processes.stop_all()
        for process in processes.processes:
            print(process.describe())


@pytest.fixture
def ros_processes(ros_env: dict[str, str], tmp_path: Path) -> Iterator[RosProcesses]:
    """Start children with the harness environment, for one test."""
    with started_processes(ros_env, tmp_path) as processes:
        yield processes


@pytest.fixture
def ros_node(ros_env: dict[str, str]) -> Iterator[RclpyNode]:
    """An rclpy node in the test process, on the harness's graph, spinning in the background."""
    pytest.importorskip("rclpy", reason="rclpy is not installed in this venv: run 'make setup'")
    node = RclpyNode(ros_env)
    try:
        yield node
    finally:
        node.close()
