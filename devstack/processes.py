"""Child processes: one spawned with its output forwarded line by line under a
``[name]`` prefix (:class:`ChildProcess`), and the :class:`Supervisor` that starts
children one at a time until each is ready, restarts one that dies with a backoff,
and stops them in reverse order, by PID, SIGTERM first."""

from __future__ import annotations

import contextlib
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from devstack.errors import StackError, StackInterrupted

STOP_TIMEOUT = 10.0
READY_TIMEOUT = 90.0
POLL_INTERVAL = 0.25
TAIL_LINES = 40
RESTART_BACKOFF = (1.0, 30.0)
# A child that ran this long before dying gets the shortest backoff again.
STABLE_AFTER = 60.0

Output = Callable[[str], None]

_stdout_lock = threading.Lock()


def stdout_line(line: str) -> None:
    # One write per line under a lock: print() writes the newline separately, and four
    # reader threads would interleave them. sys.stdout is looked up per call because
    # pytest swaps it, and a closed capture must not kill a reader thread.
    with _stdout_lock, contextlib.suppress(ValueError, OSError):
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


@dataclass(eq=False)
class ChildProcess:
    """One supervised child: its command, readiness probe, output tail and restarts."""

    name: str
    argv: list[str]
    probe: Callable[[ChildProcess], bool]
    ports: list[tuple[str, int]]
    cwd: Path
    env: dict[str, str]
    output: Output
    ready_marker: str | None = None
    # The dev server logs a screenful of expected errors while it shuts down.
    quiet_when_stopping: bool = False
    # Lines not worth printing (still kept in the tail, for a crash report).
    hidden: Callable[[str], bool] | None = None
    restarts: int = 0
    popen: subprocess.Popen[str] | None = field(default=None, repr=False)
    started_at: float = 0.0
    _tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES), repr=False)
    _marker_seen: threading.Event = field(default_factory=threading.Event, repr=False)
    _reader: threading.Thread | None = field(default=None, repr=False)
    _muted: bool = field(default=False, repr=False)

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen is not None else None

    @property
    def returncode(self) -> int | None:
        return self.popen.poll() if self.popen is not None else None

    @property
    def marker_seen(self) -> bool:
        return self._marker_seen.is_set()

    def tail(self, lines: int = TAIL_LINES) -> list[str]:
        return list(self._tail)[-lines:]

    def with_tail(self, message: str) -> str:
        """``message``, followed by the last lines this child printed."""
        lines = self.tail(20)
        if not lines:
            return f"{message} (it printed nothing)"
        shown = "\n".join(f"    [{self.name}] {line}" for line in lines)
        return f"{message}; its last lines:\n{shown}"

    def spawn(self) -> None:
        self._release()
        if self.popen is not None:
            self.restarts += 1
        self._marker_seen.clear()
        self._muted = False
        self.popen = subprocess.Popen(
            self.argv,
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
            # Own process group: Ctrl-C in the terminal reaches only the supervisor,
            # which then stops the children one by one, in reverse order.
            process_group=0,
        )
        self.started_at = time.monotonic()
        self._reader = threading.Thread(
            target=self._forward, args=(self.popen,), name=f"devstack-{self.name}", daemon=True
        )
        self._reader.start()

    def wait(self) -> int:
        assert self.popen is not None
        return self.popen.wait()

    def uptime(self) -> float:
        return time.monotonic() - self.started_at

    def flush_output(self, timeout: float = 2.0) -> None:
        """Wait for the reader to reach EOF, so the tail holds a dead child's last words."""
        if self._reader is not None:
            self._reader.join(timeout)

    def terminate(self, timeout: float, force: threading.Event, log: Output) -> None:
        popen = self.popen
        if popen is not None and popen.poll() is None:
            log(f"stopping {self.name} (pid {popen.pid})")
            self._muted = self.quiet_when_stopping
            popen.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while popen.poll() is None and time.monotonic() < deadline and not force.is_set():
                time.sleep(0.05)
            if popen.poll() is None:
                why = "asked to hurry" if force.is_set() else f"did not stop in {timeout:g}s"
                log(f"{self.name} (pid {popen.pid}) {why}; killing it")
                popen.kill()
            popen.wait()
        self._release()

    def _release(self) -> None:
        # Joined and closed, or pytest reports an unclosed pipe as an error.
        if self.popen is None:
            return
        self.flush_output()
        if self.popen.poll() is not None and self.popen.stdout is not None:
            self.popen.stdout.close()

    def _forward(self, popen: subprocess.Popen[str]) -> None:
        assert popen.stdout is not None
        marker = self.ready_marker.lower() if self.ready_marker else None
        try:
            for raw in popen.stdout:
                line = raw.rstrip("\r\n")
                self._tail.append(line)
                if marker is not None and marker in line.lower():
                    self._marker_seen.set()
                if not self._muted and not (self.hidden is not None and self.hidden(line)):
                    self.output(f"[{self.name}] {line}")
        except (ValueError, OSError):
            pass  # the pipe was closed under us while stopping


class Supervisor:
    """Starts children one at a time, each ready before the next; restarts one
    that dies (when ``restart``); stops them all in reverse order.

    ``interrupt()`` and ``force()`` are safe from a signal handler. Supervision runs
    in threads, so the children's output keeps flowing whether or not an event loop
    is running.
    """

    def __init__(
        self, *, ready_timeout: float, stop_timeout: float, restart: bool, log: Output
    ) -> None:
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self.restart = restart
        self.log = log
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._force = threading.Event()
        self._monitors: list[threading.Thread] = []

    def begin(self) -> None:
        """Forget an earlier stop, before starting again."""
        self._stopping.clear()
        self._force.clear()

    def interrupt(self) -> None:
        """Make a start in progress give up soon."""
        self._stopping.set()

    def force(self) -> None:
        """Kill instead of waiting for a graceful exit."""
        self._force.set()

    def pause(self, seconds: float) -> None:
        """Sleep, unless the stack is being stopped: then raise :class:`StackInterrupted`."""
        if self._stopping.wait(seconds):
            raise StackInterrupted("stopped while starting")

    def start(self, child: ChildProcess) -> None:
        """Spawn ``child`` and wait until it is ready; then watch it, to restart it."""
        self.log(f"starting {child.name}: {shlex.join(child.argv)}")
        began = time.monotonic()
        with self._lock:
            if self._stopping.is_set():
                raise StackInterrupted("stopped while starting")
            child.spawn()
        self._wait_ready(child, self.ready_timeout)
        self.log(f"{child.name} is ready (pid {child.pid}, {time.monotonic() - began:.1f}s)")
        if self.restart:
            monitor = threading.Thread(
                target=self._supervise, args=(child,), name=f"devstack-supervise-{child.name}"
            )
            monitor.daemon = True
            monitor.start()
            self._monitors.append(monitor)

    def stop(self, children: Sequence[ChildProcess]) -> None:
        """Stop ``children`` in reverse order and the threads that watch them."""
        self._stopping.set()
        with self._lock:
            pass  # a restart that already holds the lock finishes spawning first
        for child in reversed(children):
            child.terminate(self.stop_timeout, self._force, self.log)
        for monitor in self._monitors:
            monitor.join(5.0)
        self._monitors.clear()

    def wait_running(self, child: ChildProcess, timeout: float | None = None) -> None:
        """Block until ``child`` runs and answers its probe, e.g. after a kill and the
        restart that follows it."""
        limit = timeout or self.ready_timeout
        deadline = time.monotonic() + limit
        while not (child.returncode is None and child.probe(child)):
            if time.monotonic() >= deadline:
                raise StackError(child.with_tail(f"{child.name} was not ready after {limit:g}s"))
            time.sleep(POLL_INTERVAL)

    def _wait_ready(self, child: ChildProcess, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self._stopping.is_set():
                raise StackInterrupted(f"stopped while waiting for {child.name}")
            code = child.returncode
            if code is not None:
                child.flush_output()
                raise StackError(
                    child.with_tail(f"{child.name} exited with code {code} before it was ready")
                )
            if child.probe(child):
                return
            if time.monotonic() >= deadline:
                raise StackError(child.with_tail(f"{child.name} was not ready after {timeout:g}s"))
            self._stopping.wait(POLL_INTERVAL)

    def _supervise(self, child: ChildProcess) -> None:
        backoff = RESTART_BACKOFF[0]
        try:
            while True:
                code = child.wait()
                if self._stopping.is_set():
                    return
                if child.uptime() >= STABLE_AFTER:
                    backoff = RESTART_BACKOFF[0]
                self.log(f"{child.name} exited with code {code}; restarting in {backoff:g}s")
                if self._stopping.wait(backoff):
                    return
                backoff = min(backoff * 2, RESTART_BACKOFF[1])
                with self._lock:
                    if self._stopping.is_set():
                        return
                    child.spawn()
                try:
                    self._wait_ready(child, self.ready_timeout)
                except StackInterrupted:
                    return
                except StackError as exc:
                    self.log(str(exc))
                    child.terminate(self.stop_timeout, self._force, self.log)
                    continue
                self.log(f"{child.name} is ready again (pid {child.pid}, restart {child.restarts})")
        except Exception as exc:  # a dead supervisor would silently stop restarting
            self.log(f"supervising {child.name} failed: {exc!r}")
