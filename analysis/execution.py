"""Run untrusted code against benchmark tests in a sandbox; one outcome per task.

Outcomes:

``passed``  every test ran without an exception;
``failed``  the code loaded but a test failed: ``detail`` names the test and the failing line
            (``AssertionError (<test 2> line 1: assert f(3) == 9)``), or the exception the
            code raised while being tested;
``timeout`` no verdict within the wall-clock limit (or the CPU limit was hit);
``error``   the code could not be loaded (syntax error, exception at top level, the entry
            point missing), hit the memory limit, broke a sandbox rule, or died without a
            verdict.

How a program is put together:

* HumanEval: the study's prompt, then the code, then the benchmark's ``check`` tests. A chat
  answer that defines the whole function (with its imports) is placed after the prompt, so the
  prompt's imports and helper functions are defined and the answer's definition replaces the
  prompt's stub. A completion continues the prompt.
* MBPP: the code, then ``test_setup_code``, then each assert as its own test, so ``detail``
  says which assert failed.

The sandbox itself is ``analysis/_sandbox_worker.py`` (its docstring lists the safety layers).
``Sandbox`` keeps a few worker processes alive and feeds them jobs; a worker that dies is
replaced and its job reported as ``error``.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

WORKER = Path(__file__).with_name("_sandbox_worker.py")
STATUSES = ("passed", "failed", "timeout", "error")

DEFAULT_TIMEOUT = 5.0
DEFAULT_MEMORY_MB = 1024
WATCHDOG_GRACE = 30.0


@dataclass(frozen=True)
class Job:
    """A program to run: ``candidate`` code, then each of ``tests`` in the same namespace.

    ``entry_point``: the name the tests call (checked before the tests run). ``alias_of``:
    bind ``entry_point`` to this function of the candidate first (MBPP answers name their own
    function).
    """

    key: str
    candidate: str
    tests: tuple[str, ...]
    entry_point: str | None = None
    alias_of: str | None = None
    #: False only in tests that prove the OS-level layers hold on their own.
    guards: bool = True


@dataclass(frozen=True)
class Outcome:
    key: str
    status: str
    detail: str = ""
    stage: str = ""
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.status == "passed"


@dataclass
class Sandbox:
    """A pool of sandbox workers. Use as a context manager; ``run`` is thread-safe.

    ``timeout`` (seconds of wall clock) and ``memory_mb`` (address space) apply per job.
    """

    workers: int = max(1, min(4, os.cpu_count() or 1))
    timeout: float = DEFAULT_TIMEOUT
    memory_mb: int = DEFAULT_MEMORY_MB
    _idle: list = field(default_factory=list, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _all: list = field(default_factory=list, repr=False)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _spawn(self) -> subprocess.Popen:
        # A clean environment (no PYTHON* variables but a fixed hash seed, so that code whose
        # result depends on set order gives the same outcome on every run); -s: no user site.
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONHASHSEED": "0",
               "PYTHONSAFEPATH": "1", "LANG": "C.UTF-8"}
        proc = subprocess.Popen([sys.executable, "-s", str(WORKER)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                start_new_session=True, env=env)
        with self._lock:
            self._all.append(proc)
        return proc

    def _acquire(self) -> subprocess.Popen:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return self._spawn()

    def _release(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self._idle.append(proc)

    def _retire(self, proc: subprocess.Popen) -> None:
        with self._lock:
            if proc in self._all:
                self._all.remove(proc)
        for stream in (proc.stdin, proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        try:
            proc.kill()
        except OSError:
            pass
        proc.wait()

    def run(self, job: Job) -> Outcome:
        request = {"id": job.key, "nonce": secrets.token_hex(16), "candidate": job.candidate,
                   "tests": list(job.tests), "entry_point": job.entry_point,
                   "alias_of": job.alias_of, "guards": job.guards, "timeout": self.timeout,
                   "memory_mb": self.memory_mb}
        proc = self._acquire()
        # The worker enforces the timeout itself; this watchdog only guards against the worker
        # hanging, so that one stuck job can never hang the whole run.
        watchdog = threading.Timer(self.timeout + WATCHDOG_GRACE, proc.kill)
        watchdog.start()
        try:
            proc.stdin.write((json.dumps(request) + "\n").encode())
            proc.stdin.flush()
            line = proc.stdout.readline()
            reply = json.loads(line) if line else None
        except (OSError, ValueError):
            reply = None
        finally:
            watchdog.cancel()
        if not isinstance(reply, dict) or reply.get("id") != job.key \
                or reply.get("status") not in STATUSES:
            self._retire(proc)
            return Outcome(job.key, "error", "the sandbox worker died while running this job")
        self._release(proc)
        return Outcome(job.key, reply["status"], str(reply.get("detail", "")),
                       str(reply.get("stage", "")), float(reply.get("seconds", 0.0)))

    def layers(self) -> dict[str, bool]:
        """Which OS-level layers this machine gives the sandbox (probed by a job).

        ``uid_drop``: jobs run as a fresh uid (needs root); ``network_namespace``: jobs see no
        network interface but loopback (in-process guards aside, no network at all);
        ``mount_namespace``: jobs see the host's file systems read-only, with a private, empty
        ``/tmp`` holding their working directory (and an empty ``/dev/shm``), so they can
        create or change no file elsewhere (needs root or unprivileged user namespaces).
        """
        probe = ("import os\n"
                 "n = sum(1 for line in open('/proc/net/dev').read().splitlines()[2:] if line.strip())\n"
                 "ro = int(bool(os.statvfs('/').f_flag & os.ST_RDONLY))\n"
                 "raise RuntimeError(f'uid={os.getuid()} interfaces={n} rootro={ro} "
                 "tmpdev={os.stat(\"/tmp\").st_dev}')\n")
        o = self.run(Job("layers-probe", probe, (), guards=False))
        found = dict(part.split("=") for part in
                     o.detail.split("RuntimeError: ", 1)[-1].split(" (")[0].split()
                     if part.count("=") == 1)
        try:
            uid, interfaces = int(found["uid"]), int(found["interfaces"])
            root_ro, tmp_dev = found["rootro"] == "1", int(found["tmpdev"])
        except (KeyError, ValueError):
            return {"uid_drop": False, "network_namespace": False, "mount_namespace": False}
        return {"uid_drop": uid != os.getuid(), "network_namespace": interfaces <= 1,
                "mount_namespace": root_ro and tmp_dev != os.stat("/tmp").st_dev}

    def run_many(self, jobs: Iterable[Job]) -> Iterator[Outcome]:
        """Outcomes in the order of ``jobs``, ``workers`` at a time."""
        with ThreadPoolExecutor(self.workers) as pool:
            yield from pool.map(self.run, jobs)

    def close(self) -> None:
        with self._lock:
            procs, self._all, self._idle = list(self._all), [], []
        for proc in procs:
            try:
                proc.stdin.close()
            except OSError:
                pass
        for proc in procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            try:
                proc.stdout.close()
            except OSError:
                pass


# --------------------------------------------------------------------------------------------
# benchmark programs
# --------------------------------------------------------------------------------------------

def mbpp_tests(task) -> tuple[str, ...]:
    """``test_setup_code`` (if any) and then each assert on its own."""
    asserts = tuple(task.test_list)
    if not asserts:
        return (task.test,)
    setup = task.test.split(asserts[0], 1)[0].strip()
    return ((setup,) if setup else ()) + asserts


def job_for(task, code: str, key: str | None = None, alias_of: str | None = None,
            with_prompt: bool | None = None) -> Job:
    """The job that runs ``code`` against ``task``'s tests (see the module docstring).

    HumanEval: ``with_prompt`` (default True) puts the study's prompt first, which both
    continues a completion and supplies imports/helpers to a whole-function answer.
    """
    key = key or task.task_id
    if task.benchmark == "humaneval":
        if with_prompt is None or with_prompt:
            code = task.prompt.rstrip("\n") + "\n" + code if not code.startswith((" ", "\t")) \
                else task.prompt + code
        return Job(key, code, (task.test,), task.entry_point, alias_of)
    return Job(key, code, mbpp_tests(task), task.entry_point, alias_of)


def reference_job(task, key: str | None = None) -> Job:
    """The benchmark's own solution: HumanEval prompt + canonical body; MBPP reference code."""
    if task.benchmark == "humaneval":
        return Job(key or task.task_id, task.prompt + task.reference, (task.test,), task.entry_point)
    return Job(key or task.task_id, task.reference, mbpp_tests(task), task.entry_point)
