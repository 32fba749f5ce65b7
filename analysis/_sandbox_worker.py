"""Sandbox worker: a long-lived process that runs one untrusted program per job in a forked child.

Started by ``analysis.execution`` as ``python -s <this file>`` in a clean environment with
``PYTHONHASHSEED=0`` and ``random`` seeded per job (reproducible outcomes for code that depends on
set order or draws random numbers); it must not
import the project (the child inherits everything this process has loaded). Protocol: one
JSON job per stdin line, one JSON outcome per stdout line.

Why a fork server: the stdlib modules candidates commonly use are imported here once, so each
job costs a fork (about a millisecond) rather than a Python start-up.

Layers, outermost first (each one stands even if an inner one is bypassed):

1. a new session (process group) per job, killed as a whole on timeout;
2. as root: a new network namespace (no interface is up, so no network at all), then a fresh
   uid per job: the child cannot signal, write or delete anything the host owns, and after
   the job a reaper running as that uid kills every process left behind (``kill(-1)``), even
   ones that left the session; RLIMIT_NPROC counts only that uid, so fork bombs stop at 1;
3. a private file system (a mount and an IPC namespace; as root, or not as root inside a user
   namespace whose capabilities are then dropped): every mount read-only, an empty private
   ``/tmp`` holding only the job's working directory (also ``HOME`` and ``TMPDIR``), an
   empty read-only ``/dev/shm``; import folders inside ``/tmp`` (a checkout there) are bound
   back in read-only; the folders on ``sys.path`` that the fresh uid could not
   reach (an interpreter under a home folder) are bind-mounted into an empty tmpfs that covers
   their hidden ancestor, so every standard-library module and installed package imports,
   while nothing else of that ancestor is visible. The process is not dumpable, so its own
   ``/proc/self/mem`` is closed to it. Probed once per worker; where the kernel refuses, the
   working directory is a throw-away folder in the host's temp folder (``layers()`` says so);
4. resource limits: address space, CPU seconds, file size, open files, processes;
5. in-process guards (``guards``, on except in tests that prove the OS layers alone):
   patched ``open``/``io.open``/``_io.open``/``FileIO``/``os`` functions that refuse writes,
   deletes, renames and permission changes outside the working directory, and an audit hook
   (raised by the interpreter in C, impossible to remove) that refuses processes, signals,
   sockets, ctypes use, writing outside the working directory by any ``open`` route, tracing,
   and every way to a frame or to arbitrary objects (``sys._getframe``, ``tb_frame``,
   ``gi_frame``, ``gc.get_objects``...), except frame reads by sympy, mpmath and logging.

The verdict. The harness code that runs after the candidate (``_run_child``) calls only
private references bound before the candidate ran (keyword defaults and locals, which no
module attribute reaches), builds its verdict with ``str`` methods, writes it on a private
pipe tagged with a per-job nonce and exits at once; the tests run with a fresh copy of the
builtins taken before the candidate ran and are compiled with asserts kept. So patching
``builtins.exec``/``compile``/``abs``, ``json``, ``os.write`` or this module's globals cannot
turn a failure into a pass. The nonce and the pipe are reachable only through frames or the
garbage collector, which the audit hook refuses. Residual limits: with the guards off, code that
walks the frames to the harness can still write a "passed" (tested, so it stays visible);
with them on, a forgery needs an interpreter memory-safety bug; and a candidate can always
satisfy a test that trusts what it returns (an object equal to everything) or patch a module
the test itself uses (``math.isclose``).
"""

from __future__ import annotations

import _io
import builtins
import errno
import io
import json
import os
import posix
import random
import resource
import select
import shutil
import signal
import sys
import tempfile
import time

# Preloaded for speed, and for the fallback without a mount namespace, where after the uid drop
# the interpreter's library may be unreadable. Chosen from the imports of HumanEval/MBPP
# solutions and of GPT-4's answers.
PRELOAD = (
    "array", "bisect", "calendar", "cmath", "collections", "collections.abc", "copy", "csv",
    "dataclasses", "datetime", "decimal", "difflib", "enum", "fractions", "functools", "hashlib",
    "heapq", "io", "itertools", "json", "math", "numbers", "operator", "random", "re", "statistics",
    "string", "struct", "textwrap", "typing", "unicodedata", "queue", "sys", "time",
    "ctypes", "colorsys", "doctest", "ast", "contextlib", "abc", "types", "weakref", "pprint",
    "secrets", "base64", "binascii", "zlib", "locale", "traceback", "warnings", "keyword",
    "_thread", "threading", "_strptime",
)
for _name in PRELOAD:
    try:
        __import__(_name)
    except ImportError:  # a trimmed interpreter: the child will report the ImportError
        pass

import _thread  # noqa: E402  (preloaded above)
import ctypes  # noqa: E402  (preloaded above; used only before the guards go up)
import threading  # noqa: E402

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_BIND, MS_MOVE, MS_REC, MS_PRIVATE = 4096, 8192, 16384, 1 << 18
SYS_MOUNT_SETATTR = 442  # the same number on every architecture (added in Linux 5.12)
AT_FDCWD, AT_RECURSIVE, MOUNT_ATTR_RDONLY = -100, 0x8000, 1
PR_SET_DUMPABLE = 4
PR_SET_SECUREBITS, SECBIT_NOROOT, SECBIT_NOROOT_LOCKED = 28, 1, 2
PR_SET_NO_NEW_PRIVS = 38
LINUX_CAPABILITY_VERSION_3 = 0x20080522
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

    class GuardedFileIO(_io.FileIO):
        def __init__(self, file, mode="r", closefd=True, opener=None):
            if any(c in mode for c in "wax+") and not inside(file):
                raise SandboxViolation(f"sandbox: FileIO({file!r}, {mode!r}) outside the working "
                                       f"directory")
            super().__init__(file, mode, closefd, opener)

    builtins.open = io.open = _io.open = guarded_open
    io.FileIO = _io.FileIO = GuardedFileIO
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
                     "fchmod", "fchown",
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

    # Threads: the modules stay importable (``_strptime``, ``logging`` and numpy import them),
    # starting one is refused (RLIMIT_NPROC refuses it too once the uid is dropped).
    _thread.start_new_thread = _thread.start_new = _refuse("starting a thread")
    threading._start_new_thread = _refuse("starting a thread")

    # Modules that can reach the network or other processes stay importable (scipy and pandas
    # import subprocess, sympy imports ctypes): what they could do is refused by the audit hook
    # (``AUDIT_VETOES``), which patched module attributes cannot get around.


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


def _mount(source, target, fstype, flags, data=None) -> None:
    def enc(x):
        return None if x is None else os.fsencode(x)

    if _libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {target}: {os.strerror(err)}")


def _exposures() -> dict[str, list[str]]:
    """Import folders (``sys.path``) whose ancestors the fresh uid cannot enter, grouped by the
    highest such ancestor: ``{'/home/me': ['/home/me/.pyenv/versions/3.11/lib/python3.11']}``.

    Inside the mount namespace each group's ancestor is covered by an empty tmpfs into which
    only these folders are bind-mounted, so the interpreter's library and the virtualenv become
    importable without changing any permission on the host (and the rest stays hidden).
    """
    paths = sorted({os.path.realpath(p) for p in sys.path if p and os.path.isdir(p)})
    top = [p for p in paths if not any(p.startswith(q.rstrip("/") + "/") for q in paths if q != p)]
    groups: dict[str, list[str]] = {}
    for p in top:
        parts = p.strip("/").split("/")
        for n in range(1, len(parts)):
            ancestor = "/" + "/".join(parts[:n])
            if not os.stat(ancestor).st_mode & 0o001:
                groups.setdefault(ancestor, []).append(p)
                break
    for d in sorted(groups):  # a hidden ancestor inside another one joins the outer group
        outer = [e for e in groups if e != d and d.startswith(e.rstrip("/") + "/")]
        if outer:
            groups[outer[0]] += groups.pop(d)
    return groups


EXPOSE = _exposures() if IS_ROOT else {}


def _under_tmp() -> list[str]:
    """Import folders inside ``/tmp`` (a checkout or virtualenv there, as in a CI clone): the
    private ``/tmp`` would hide them, so they are bound back in, read-only."""
    paths = sorted({os.path.realpath(p) for p in sys.path if p and os.path.isdir(p)})
    inside = [p for p in paths if p.startswith("/tmp/")]
    return [p for p in inside if not any(p.startswith(q + "/") for q in inside if q != p)]


TMP_IMPORTS = _under_tmp()


def _readonly(path: str) -> None:
    """One mount (and those below it) read-only."""
    attr = (ctypes.c_uint64 * 4)(MOUNT_ATTR_RDONLY, 0, 0, 0)
    if _libc.syscall(SYS_MOUNT_SETATTR, AT_FDCWD, os.fsencode(path), AT_RECURSIVE, attr,
                     ctypes.sizeof(attr)) == 0:
        return
    try:
        _mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY)
    except OSError:  # a user namespace keeps the source's locked flags
        _mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def _readonly_everything() -> None:
    """Every mount of this (private) mount namespace read-only; the host's mounts are untouched."""
    attr = (ctypes.c_uint64 * 4)(MOUNT_ATTR_RDONLY, 0, 0, 0)
    if _libc.syscall(SYS_MOUNT_SETATTR, AT_FDCWD, b"/", AT_RECURSIVE, attr, ctypes.sizeof(attr)) == 0:
        return
    # Kernels before 5.12: remount each mount point read-only (MS_BIND: this mount only, never
    # the file system, which the host shares), keeping the flags a user namespace may lock.
    keep = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC}
    with open("/proc/self/mountinfo") as f:
        rows = [line.split() for line in f]
    for row in sorted(rows, key=lambda r: r[4].count("/")):
        target = row[4].encode().decode("unicode_escape")
        flags = MS_BIND | MS_REMOUNT | MS_RDONLY
        for opt in row[5].split(","):
            flags |= keep.get(opt, 0)
        try:
            _mount(None, target, None, flags)
        except OSError:
            if target == "/":
                raise


def _private_filesystem(workdir: str, uid: int | None, tmp_mb: int) -> bool:
    """A mount namespace with a read-only view of the host, an empty private ``/tmp`` (holding
    only ``workdir``), an empty read-only ``/dev/shm``, private SysV IPC, and the import
    folders exposed (``EXPOSE``). As root before the uid drop; otherwise inside a new user
    namespace, whose capabilities are then dropped for good, so the mounts cannot be undone.
    False where the kernel refuses (the caller falls back to the host's working directory).
    """
    if IS_ROOT:
        if _libc.unshare(CLONE_NEWNS | CLONE_NEWIPC) != 0:
            return False
    else:
        real_uid, real_gid = os.getuid(), os.getgid()
        if _libc.unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWNET) != 0:
            return False
        _map_ids(real_uid, real_gid)
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    # handles on the import folders inside /tmp, to bind them back once /tmp is replaced
    kept = [(path, os.open(path, os.O_PATH | os.O_DIRECTORY)) for path in TMP_IMPORTS]
    _mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0700")  # staging
    staged = []
    for i, (hidden, paths) in enumerate(sorted(EXPOSE.items())):
        for j, path in enumerate(paths):
            stage = f"/tmp/{i}-{j}"
            os.mkdir(stage)
            _mount(path, stage, None, MS_BIND | MS_REC)
            staged.append((hidden, path, stage))
    for hidden in sorted(EXPOSE):
        _mount("tmpfs", hidden, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
    for _, path, stage in staged:
        os.makedirs(path, 0o755, exist_ok=True)
        _mount(stage, path, None, MS_MOVE)
    _readonly_everything()
    # 0555: only the working directory inside is writable, whoever owns the tmpfs
    _mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"size={tmp_mb}m,mode=0555")
    os.mkdir(workdir, 0o700)
    if uid is not None:
        os.chown(workdir, uid, uid)
    for path, fd in kept:
        os.makedirs(path, 0o755, exist_ok=True)
        _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
        _readonly(path)
        os.close(fd)
    if os.path.isdir("/dev/shm"):
        _mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY,
               "size=4k,mode=0755")
    if not IS_ROOT:  # give up, for good, the capabilities that could undo these mounts
        _drop_capabilities()
    return True


def _drop_capabilities() -> None:
    """Empty capability sets that no later execve can refill (no root privileges for uid 0,
    no new privileges)."""
    if _libc.prctl(PR_SET_SECUREBITS, SECBIT_NOROOT | SECBIT_NOROOT_LOCKED, 0, 0, 0) != 0 \
            or _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl refused")
    header = (ctypes.c_uint32 * 2)(LINUX_CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()
    if _libc.capset(header, data) != 0:
        raise OSError(ctypes.get_errno(), "capset refused")


def _map_ids(uid: int, gid: int) -> None:
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"),
                       ("gid_map", f"{gid} {gid} 1")):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(text)


def _isolate(workdir: str, fallback_workdir: str, uid: int | None, tmp_mb: int) -> str:
    """Network namespace, private file system and (as root) a fresh uid; best effort where
    unavailable. Returns the working directory the job uses.

    Root without CAP_SYS_ADMIN (a default container) cannot make a network namespace directly;
    after dropping to the fresh uid it may still make one inside a new user namespace, where
    the kernel allows unprivileged user namespaces.
    """
    netns = IS_ROOT and _libc.unshare(CLONE_NEWNET) == 0
    if PRIVATE_FS and _private_filesystem(workdir, uid, tmp_mb):
        netns = True if not IS_ROOT else netns
    else:
        workdir = fallback_workdir
    os.chdir(workdir)
    if uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    _libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)  # /proc/self/mem etc. become root's
    if not netns:
        _libc.unshare(CLONE_NEWUSER | CLONE_NEWNET)
    return workdir


class IntrospectionRefused(AttributeError):
    """An AttributeError, so that stdlib code probing its caller's frame (``namedtuple``,
    ``typing``, ``enum``) takes its documented fallback instead of failing."""


#: Audit events refused to sandboxed code when the guards are on. Raised by the interpreter in
#: C, so no patched attribute avoids them, and a hook cannot be removed once added.
#: Processes, signals, network, ctypes (loading a library, calling a function, reading memory):
AUDIT_VETOES = frozenset({
    "os.fork", "os.forkpty", "os.exec", "os.posix_spawn", "os.spawn", "os.system", "os.kill",
    "os.killpg", "subprocess.Popen", "signal.pthread_kill", "sqlite3.connect",
    "sqlite3.connect/handle", "sys.settrace", "sys.setprofile"})
AUDIT_VETOED_PREFIXES = ("ctypes.", "socket.")
#: ... and the ways to reach the harness's frames and objects (and so its pipe and nonce).
FRAME_EVENTS = frozenset({"sys._getframe", "sys._current_frames", "sys._current_exceptions",
                          "gc.get_objects", "gc.get_referrers", "gc.get_referents"})
FRAME_ATTRIBUTES = frozenset({"tb_frame", "gi_frame", "cr_frame", "ag_frame"})


def _library_dirs(names) -> tuple[str, ...]:
    """Folders of installed packages that read their caller's frame for benign reasons (sympy's
    dispatch and ``var``, mpmath's backend, logging's caller lookup): frame requests whose
    first caller outside ``inspect`` lives there are let through. Each folder as imported and
    with symbolic links resolved: a frame's file name is the path it was imported by, which
    goes through the link when the environment is a symlinked virtualenv."""
    import importlib.util
    out = []
    for name in names:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        if spec is not None and spec.submodule_search_locations:
            for p in spec.submodule_search_locations:
                out.extend(d + os.sep for d in (os.path.abspath(p), os.path.realpath(p)))
    return tuple(dict.fromkeys(out))


#: a job's working directory: ``<temp folder>/<prefix>XXXX`` on the host, ``/tmp/<prefix>XXXX``
#: inside the private ``/tmp``
WORKDIR_PREFIX = "sandbox-"
FRAME_TRUSTED_DIRS = _library_dirs(("sympy", "mpmath", "logging"))
LOGGING_DIRS = _library_dirs(("logging",))
INSPECT_FILE = os.path.realpath(__import__("inspect").__file__)


def _normpath(path: str, cwd: str) -> str:
    """``path`` made absolute and normalised with ``str`` methods only (no patchable module)."""
    parts = [] if path.startswith("/") else cwd.split("/")
    for part in path.split("/"):
        if part == "..":
            if len(parts) > 1:
                parts.pop()
        elif part and part != ".":
            parts.append(part)
    return "/" + "/".join(p for p in parts if p)


def _run_child(job: dict, workdir: str, fallback_workdir: str, uid: int | None, verdict_fd: int,
               *, _exec=exec, _compile=compile, _write=posix.write, _exit=posix._exit, _str=str,
               _type=type, _len=len, _range=range, _dict=dict, _BaseException=BaseException,
               _MemoryError=MemoryError, _SyntaxError=SyntaxError, _ImportError=ImportError,
               _Refused=IntrospectionRefused, _Violation=SandboxViolation, _vetoed=AUDIT_VETOES,
               _vetoed_prefixes=AUDIT_VETOED_PREFIXES, _frame_events=FRAME_EVENTS,
               _frame_attrs=FRAME_ATTRIBUTES, _trusted=FRAME_TRUSTED_DIRS, _inspect=INSPECT_FILE,
               _trusted_deep=LOGGING_DIRS, _getframe=sys._getframe, _fspath=os.fspath,
               _normpath=_normpath, _isinstance=isinstance, _str_str=str.__str__,
               _bytes_decode=bytes.decode,
               _write_flags=os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND,
               _int=int, _bytes=bytes, _addaudithook=sys.addaudithook) -> None:
    """Isolate, load the candidate, run the tests, write the verdict, exit; never returns.

    Everything called once candidate code has run is a private reference bound here before it
    ran (keyword defaults and locals of this call, which no module attribute reaches): patching
    ``builtins.exec``/``compile``, ``json``, ``os.write`` or this module's globals changes
    nothing the verdict depends on. The verdict is plain text built with ``str`` methods.
    The tests see a fresh copy of the builtins taken before the candidate ran (``import
    builtins; builtins.abs = ...`` does not reach them) and are compiled with asserts kept.
    """
    nonce, candidate = job["nonce"], job["candidate"]
    tests, entry, alias = list(job["tests"]), job.get("entry_point"), job.get("alias_of")
    sources = {"<candidate>": candidate}
    for i, t in enumerate(tests):
        sources[f"<test {i}>"] = t

    def report(status: str, detail: str = "", stage: str = "") -> None:
        data = (nonce + "\n" + status + "\n" + stage + "\n" + detail[:2000]).encode("utf-8", "replace")
        _write(verdict_fd, data)
        _exit(0)

    def where(tb) -> str:
        # Only attributes of the interpreter's own types: no candidate code runs during the walk
        # (the audit hook lets this function's code, and no other, read tb_frame).
        last = None
        while tb is not None:
            name = tb.tb_frame.f_code.co_filename
            if _type(name) is _str and name in sources:
                last = (name, tb.tb_lineno)
            tb = tb.tb_next
        if last is None:
            return ""
        name, lineno = last
        lines = sources[name].splitlines()
        text = lines[lineno - 1].strip() if 0 < lineno <= _len(lines) else ""
        return f"{name} line {lineno}: {text}"

    where_code = where.__code__
    busy = [False]  # only audit() below holds it: no frame or object reaches it

    def filename(frame) -> str:
        name = frame.f_code.co_filename
        return name if _type(name) is _str else ""

    def frame_allowed(event) -> bool:
        requester = _getframe(2)  # 0 is this function, 1 audit(), 2 who asked
        if event != "sys._getframe":
            return requester is not None and requester.f_code is where_code
        while requester is not None and filename(requester) == _inspect:
            requester = requester.f_back  # inspect.currentframe(): judge its caller
        if requester is None or not filename(requester).startswith(_trusted):
            return False
        # logging.currentframe() hands a frame to whoever calls it: only logging itself may
        caller = requester.f_back
        return not filename(requester).startswith(_trusted_deep) or (
            caller is not None and filename(caller).startswith(_trusted_deep))

    def audit(event, args):
        if busy[0]:
            return
        if event in _vetoed or event.startswith(_vetoed_prefixes):
            raise _Violation(f"sandbox: {event} is not allowed")
        if event == "open":  # every way to open a file: open, io/_io.open, FileIO, os.open
            path, mode, flags = args
            writing = (mode is not None and ("w" in mode or "a" in mode or "x" in mode
                                             or "+" in mode)) or (flags or 0) & _write_flags
            if writing and _type(path) is not _int:
                path = _fspath(path)  # exact str/bytes below: no overridden method runs
                path = _bytes_decode(path, "utf-8", "surrogateescape") if _isinstance(path, _bytes) \
                    else _str_str(path)
                full = _normpath(path, workdir)
                if full != workdir and not full.startswith(workdir + "/"):
                    raise _Violation(f"sandbox: writing {full} (outside the working directory)")
            return
        if event in _frame_events or (event == "object.__getattr__" and args[1] in _frame_attrs):
            busy[0] = True
            try:
                allowed = frame_allowed(event)
            finally:
                busy[0] = False
            if not allowed:
                raise _Refused(f"sandbox: {event} is not allowed (frame introspection)")

    def describe(exc) -> str:
        try:  # str() of the exception may run candidate code: it can spoil the text, no more
            text = _str(exc)
            msg = f"{_type(exc).__name__}: {text}" if text else _type(exc).__name__
            at = where(exc.__traceback__)
            return f"{msg} ({at})" if at else msg
        except _BaseException:
            return "(the exception could not be described)"

    try:
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        workdir = os.path.realpath(_isolate(workdir, fallback_workdir, uid,
                                            4 * int(job.get("fsize_mb", 16))))
        os.environ.clear()
        os.environ.update({"HOME": workdir, "TMPDIR": workdir, "PATH": "/nonexistent",
                           "LANG": "C.UTF-8"})
        tempfile.tempdir = workdir
        _set_limits(job)
        if job.get("guards", True):
            _install_guards(workdir)
            _addaudithook(audit)
        builtins_snapshot = _dict(builtins.__dict__)  # with the guards' open, before the candidate
    except BaseException as exc:  # never run untrusted code half-guarded
        report("error", f"sandbox setup failed: {type(exc).__name__}: {exc}", "setup")
    sys.setrecursionlimit(3000)
    # the same pseudo-random draws in every run, as PYTHONHASHSEED=0 gives the same set order:
    # code that prints or returns random values reports the same values each time
    random.seed(0)
    namespace = {"__name__": "__candidate__", "__builtins__": _dict(builtins_snapshot)}
    try:
        _exec(_compile(candidate, "<candidate>", "exec", 0, True, 0), namespace)
    except _MemoryError:
        report("error", "memory limit exceeded while loading the code", "candidate")
    except _SyntaxError as exc:
        report("error", f"SyntaxError: {exc.msg} (<candidate> line {exc.lineno})", "candidate")
    except _ImportError as exc:
        report("error", describe(exc), "candidate")
    except _BaseException as exc:  # SystemExit and KeyboardInterrupt too: candidate code's doing
        report("error", describe(exc), "candidate")
    if alias:
        if alias not in namespace:
            report("error", f"{alias} is not defined by the code", "candidate")
        namespace[entry] = namespace[alias]
    if entry and entry not in namespace:
        report("error", f"the tests call {entry}, which the code does not define", "candidate")
    for i in _range(_len(tests)):
        stage = f"test {i}"
        try:
            code = _compile(tests[i], f"<test {i}>", "exec", 0, True, 0)
            namespace["__builtins__"] = _dict(builtins_snapshot)
            _exec(code, namespace)
        except _MemoryError:
            report("error", "memory limit exceeded while testing", stage)
        except _BaseException as exc:
            report("failed", describe(exc), stage)
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
    workdir = tempfile.mkdtemp(prefix=WORKDIR_PREFIX)
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
            _run_child(job, "/tmp/" + os.path.basename(workdir), workdir, uid, w)
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
    nonce = job["nonce"].encode()
    parts = raw.split(b"\n", 3)
    # Exactly one record, with this job's nonce: the harness writes one and exits at once.
    if len(parts) == 4 and parts[0] == nonce and raw.count(nonce) == 1 \
            and parts[1] in (b"passed", b"failed", b"error"):
        out.update(status=parts[1].decode(), stage=parts[2].decode("utf-8", "replace"),
                   detail=parts[3].decode("utf-8", "replace"))
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


def _probe_private_filesystem() -> bool:
    """Whether a child can build the private file system (kernel, container and privileges
    allow it); tried once per worker so that a machine without it falls back to the host's
    working directory instead of failing every job halfway through the setup."""
    pid = os.fork()
    if pid == 0:
        try:
            code = 0 if _private_filesystem(f"/tmp/{WORKDIR_PREFIX}probe", None, 1) else 1
        except BaseException:
            code = 2
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


PRIVATE_FS = False  # set by main() from the probe


def main() -> None:
    global PRIVATE_FS
    PRIVATE_FS = _probe_private_filesystem()
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
