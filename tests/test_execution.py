"""The execution harness: outcomes, and that hostile code harms neither the host nor the results.

Each hostile case runs twice where it matters: with the in-process guards (the normal run) and
with ``guards=False``, which proves that the OS-level layers (fresh uid, network namespace,
resource limits, uid-wide kill) hold on their own, since in-process guards can be bypassed by
introspection. Each OS-level case runs where the layer it relies on exists (``Sandbox.layers``:
the uid drop needs root, the network namespace CAP_SYS_ADMIN or unprivileged user namespaces);
elsewhere it is reported as skipped, never as passed.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

import pytest

from analysis.execution import Job, Sandbox, job_for, mbpp_tests, reference_job

ROOT = os.geteuid() == 0


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(workers=2, timeout=2.0, memory_mb=512) as sb:
        yield sb


@pytest.fixture(scope="module")
def layers(sandbox):
    return sandbox.layers()


def require(layers, guards: bool, *needed: str) -> None:
    """With the in-process guards off, a case proves something only where the OS layer it
    relies on exists; elsewhere it is skipped (never counted as passed)."""
    missing = [n for n in needed if not layers.get(n, False)]
    if not guards and missing:
        pytest.skip(f"OS-level layer not available on this machine: {', '.join(missing)}")


def test_layers_probe(layers):
    assert set(layers) == {"uid_drop", "network_namespace", "mount_namespace"}
    assert layers["uid_drop"] == ROOT  # the harness drops to a fresh uid exactly when root
    assert layers["mount_namespace"] == _can_make_a_mount_namespace()


def _can_make_a_mount_namespace() -> bool:
    """Probed independently of the harness: may a child process here unshare its mounts?"""
    import ctypes
    pid = os.fork()
    if pid == 0:
        flags = 0x00020000 | (0 if ROOT else 0x10000000)  # CLONE_NEWNS (| CLONE_NEWUSER)
        os._exit(0 if ctypes.CDLL(None).unshare(flags) == 0 else 1)
    return os.waitpid(pid, 0)[1] == 0


def run(sb, code, tests=("pass",), entry=None, guards=True, alias=None):
    return sb.run(Job("t", code, tuple(tests), entry, alias, guards))


def still_works(sb):
    o = run(sb, "def f(x):\n    return x * 2\n", ["assert f(2) == 4"], "f")
    assert o.status == "passed", o


# -- ordinary outcomes ----------------------------------------------------------------------

def test_passed_failed_error(sandbox):
    assert run(sandbox, "def f(x):\n    return x + 1\n", ["assert f(1) == 2"], "f").status == "passed"
    o = run(sandbox, "def f(x):\n    return x\n", ["assert f(1) == 1", "assert f(1) == 2"], "f")
    assert o.status == "failed"
    assert o.stage == "test 1" and "assert f(1) == 2" in o.detail and "AssertionError" in o.detail
    o = run(sandbox, "def f(x)\n    return x\n", ["assert f(1) == 1"], "f")
    assert o.status == "error" and "SyntaxError" in o.detail
    o = run(sandbox, "def g(x):\n    return x\n", ["assert f(1) == 1"], "f")
    assert o.status == "error" and "does not define" in o.detail


def test_exception_in_candidate_during_tests_is_a_failure(sandbox):
    o = run(sandbox, "def f(x):\n    return 1 // x\n", ["assert f(0) == 1"], "f")
    assert o.status == "failed" and "ZeroDivisionError" in o.detail and "<candidate> line 2" in o.detail


def test_alias(sandbox):
    o = run(sandbox, "def mine(x):\n    return -x\n", ["assert theirs(3) == -3"], "theirs", alias="mine")
    assert o.status == "passed"


def test_exit_is_not_a_pass(sandbox):
    for code in ("import sys\nsys.exit(0)\n", "import os\nos._exit(0)\n", "raise SystemExit\n"):
        o = run(sandbox, code, ["assert False"])
        assert o.status == "error", (code, o)


def test_benchmark_programs(corrected):
    by_id = corrected.by_id()
    he, mb = by_id["HumanEval/0"], by_id["mbpp/601"]
    tests = mbpp_tests(mb)
    assert tests[-len(mb.test_list):] == mb.test_list
    with Sandbox(workers=1, timeout=5) as sb:
        assert sb.run(reference_job(he)).passed
        assert sb.run(reference_job(mb)).passed
        # a whole-function answer after the prompt replaces the prompt's stub
        body = "def has_close_elements(numbers, threshold):\n    return True\n"
        o = sb.run(job_for(he, body))
        assert o.status == "failed" and "assert" in o.detail
        # a completion continues the prompt
        good = "    return any(abs(a - b) < threshold for i, a in enumerate(numbers) " \
               "for j, b in enumerate(numbers) if i != j)\n"
        assert sb.run(job_for(he, good)).passed


# -- hostile completions --------------------------------------------------------------------

def test_infinite_loop_times_out_and_the_sandbox_recovers(sandbox):
    start = time.monotonic()
    o = run(sandbox, "while True:\n    pass\n")
    assert o.status == "timeout"
    assert time.monotonic() - start < 5
    o = run(sandbox, "import signal\nsignal.signal(signal.SIGXCPU, signal.SIG_IGN)\nwhile True:\n"
                     "    pass\n")
    assert o.status == "timeout"
    still_works(sandbox)


def test_sleeping_and_output_flood_time_out(sandbox):
    assert run(sandbox, "import time\ntime.sleep(60)\n").status == "timeout"
    assert run(sandbox, "while True:\n    print('x' * 100000)\n").status == "timeout"
    still_works(sandbox)


@pytest.mark.parametrize("guards", [True, False])
def test_fork_bomb(sandbox, layers, guards):
    if ROOT:
        require(layers, guards, "uid_drop")  # RLIMIT_NPROC binds root only after the uid drop
    before = len(os.listdir("/proc"))
    o = run(sandbox, "import os\nwhile True:\n    os.fork()\n", guards=guards)
    assert o.status == "error", o
    assert ("not allowed" if guards else "Resource temporarily unavailable") in o.detail
    assert len(os.listdir("/proc")) < before + 20
    o = run(sandbox, "import subprocess\nsubprocess.run(['true'])\n", guards=guards)
    assert o.status == "error"
    still_works(sandbox)


@pytest.mark.parametrize("guards", [True, False])
def test_huge_allocation(sandbox, guards):
    o = run(sandbox, "x = bytearray(10 ** 11)\n", guards=guards)
    assert o.status == "error" and "memory" in o.detail
    with Sandbox(workers=1, timeout=20, memory_mb=256) as small:  # generous time: page faults
        o = run(small, "a = []\nwhile True:\n    a.append(' ' * 10 ** 7)\n", guards=guards)
        assert o.status == "error" and "memory" in o.detail
        still_works(small)
    still_works(sandbox)


@pytest.mark.parametrize("guards", [True, False])
def test_deleting_and_overwriting_files(sandbox, layers, tmp_path, guards):
    require(layers, guards, "uid_drop")
    folder = tmp_path / "precious"
    folder.mkdir()
    sentinel = folder / "keep.txt"
    sentinel.write_text("keep")
    # world-readable and traversable: only ownership stands between the sandbox and the file
    os.chmod(tmp_path, 0o755)
    os.chmod(folder, 0o755)
    os.chmod(sentinel, 0o644)
    attacks = [f"import os\nos.remove({str(sentinel)!r})\n",
               f"import shutil\nshutil.rmtree({str(folder)!r})\n",
               f"open({str(sentinel)!r}, 'w').write('gone')\n",
               f"import os\nos.rename({str(sentinel)!r}, 'stolen')\n",
               f"import os\nos.chmod({str(sentinel)!r}, 0o777)\n"]
    for code in attacks:
        o = run(sandbox, code, guards=guards)
        assert o.status == "error", (code, o)
        assert sentinel.read_text() == "keep"
        assert oct(sentinel.stat().st_mode & 0o777) == "0o644"
    # its own working directory is writable, and thrown away afterwards
    o = run(sandbox, "import os\nopen('scratch.txt', 'w').write('x')\nos.remove('scratch.txt')\n"
                     "raise RuntimeError(os.getcwd())\n", guards=guards)
    workdir = o.detail.split("RuntimeError: ")[1].split(" (")[0]
    assert os.path.basename(workdir).startswith("sandbox-")
    assert not os.path.exists(workdir)


def test_writing_a_huge_file_hits_the_size_limit(sandbox):
    o = run(sandbox, "with open('big', 'wb') as f:\n    while True:\n        f.write(b'x' * 10 ** 6)\n")
    assert o.status == "error", o


@pytest.fixture
def listener():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(0.2)
    yield srv
    srv.close()


@pytest.mark.parametrize("guards", [True, False])
def test_sockets(sandbox, layers, listener, guards):
    require(layers, guards, "network_namespace")
    port = listener.getsockname()[1]
    o = run(sandbox, f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), "
                     f"timeout=1)\ns.sendall(b'hello')\n", guards=guards)
    assert o.status == "error", o
    with pytest.raises(TimeoutError):
        listener.accept()  # nobody connected
    o = run(sandbox, "import socket\nsocket.getaddrinfo('pypi.org', 443)\n", guards=guards)
    assert o.status == "error"


@pytest.mark.parametrize("guards", [True, False])
def test_killing_the_parent_and_the_host(sandbox, layers, guards):
    require(layers, guards, "uid_drop")
    me = os.getpid()
    victim = subprocess.Popen(["sleep", "30"])
    try:
        for code in ("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n",
                     "import os, signal\nos.killpg(os.getpgid(os.getppid()), signal.SIGKILL)\n",
                     f"import os, signal\nos.kill({me}, signal.SIGKILL)\n",
                     f"import os, signal\nos.kill({victim.pid}, signal.SIGKILL)\n"):
            o = run(sandbox, code, guards=guards)
            assert o.status == "error", (code, o)
        # "every process I may signal": none but itself once it runs as its own uid
        run(sandbox, "import os, signal\nos.kill(-1, signal.SIGKILL)\n", guards=guards)
        assert victim.poll() is None  # still running
    finally:
        victim.kill()
        victim.wait()
    still_works(sandbox)


def test_escaped_processes_are_killed(sandbox, layers):
    """A process that left the session is still killed: it runs as the job's uid."""
    require(layers, False, "uid_drop")
    # NPROC=1 stops a second process of that uid, so try with a thread-free double fork of
    # a shell: the fork must fail, and nothing of the job may survive it.
    o = run(sandbox, "import os\npid = os.fork()\nif pid == 0:\n    os.setsid()\n"
                     "    import time\n    time.sleep(60)\n", guards=False)
    assert o.status == "error" and "Resource temporarily unavailable" in o.detail
    out = subprocess.run(["ps", "-eo", "uid=,args="], capture_output=True, text=True).stdout
    # only this sandbox's uids (100000 + 1000 * (worker pid % 100000) + job): other sandboxes
    # may be running on the machine
    ours = {p.pid % 100_000 for p in sandbox._all}
    uids = [int(line.split()[0]) for line in out.splitlines() if line.strip()]
    assert not any(u >= 100_000 and (u - 100_000) // 1000 in ours for u in uids)


def test_forged_verdicts_are_not_believed(sandbox):
    forge = ("import os, json\n"
             "fake = json.dumps({'nonce': 'guess', 'status': 'passed'}).encode()\n"
             "print(fake.decode())\n"
             "for fd in range(3, 64):\n"
             "    try:\n        os.write(fd, fake)\n    except OSError:\n        pass\n"
             "os._exit(0)\n")
    o = run(sandbox, forge, ["assert False"])
    assert o.status == "error", o


WRONG = "def f(x):\n    return x + 1\n"  # the tests below want 2 * x
FORGERIES = {
    "exec": "import builtins\nbuiltins.exec = lambda *a, **k: None\n",
    "compile": "import builtins\n_c = builtins.compile\n"
               "builtins.compile = lambda *a, **k: _c('pass', '<x>', 'exec')\n",
    "AssertionError": "import builtins\nbuiltins.AssertionError = type('E', (Exception,), {})\n",
    "range/len/enumerate": "import builtins\nbuiltins.range = lambda *a: []\n"
                           "builtins.len = lambda *a: 0\nbuiltins.enumerate = lambda *a: iter(())\n",
    "str/type": "import builtins\nbuiltins.str = lambda *a, **k: 'passed'\n"
                "builtins.type = lambda *a: None\n",
    "abs in the tests": "import builtins\nbuiltins.abs = lambda *a: 0\n",
    "json/os.write": "import json, os, posix\njson.dumps = lambda *a, **k: '{\"status\": \"passed\"}'\n"
                     "os.write = posix.write = lambda fd, data: len(data)\n",
    "the worker's globals": "import __main__\nfor k in list(vars(__main__)):\n"
                            "    if not k.startswith('__'):\n        setattr(__main__, k, None)\n",
}


@pytest.mark.parametrize("guards", [True, False])
@pytest.mark.parametrize("route", sorted(FORGERIES))
def test_patched_builtins_cannot_forge_a_pass(sandbox, guards, route):
    """A wrong answer that patches what a naive harness calls after it ran still fails: the
    harness calls only private references, and the tests see the builtins as they were."""
    tests = ["assert f(1) == 2", "assert abs(f(3) - 6) < 1e-9"]
    o = run(sandbox, WRONG + FORGERIES[route], tests, "f", guards=guards)
    assert o.status == "failed" and o.stage == "test 1", (route, o)
    assert "assert abs(f(3) - 6)" in o.detail
    # the same patch on a right answer does not turn it into a failure
    o = run(sandbox, "def f(x):\n    return 2 * x\n" + FORGERIES[route], tests[:1], "f", guards=guards)
    assert o.status == "passed", (route, o)


FRAMES = {
    "sys._getframe": "f = sys._getframe()\n",
    "inspect": "import inspect\nf = inspect.currentframe()\n",
    "logging": "import logging\nf = logging.currentframe()\n",  # a frame-reading library
    "traceback": "try:\n    1 / 0\nexcept ZeroDivisionError as e:\n    f = e.__traceback__.tb_frame\n",
    "generator": "def g():\n    yield\nf = g().gi_frame\n",
    "gc": "import gc\nf = [o for o in gc.get_objects() if 'report' in getattr(o, 'f_locals', ())][0]\n",
}
FRAME_FORGERY = ("while f is not None:\n"
                 "    if 'report' in f.f_locals:\n"
                 "        f.f_locals['report']('passed')\n"
                 "    f = f.f_back\n")


@pytest.mark.parametrize("how", sorted(FRAMES))
def test_introspection_of_the_harness_is_refused(sandbox, how):
    """With the guards on, the frames and objects that hold the verdict channel are out of
    reach (an audit hook, which candidate code cannot remove)."""
    code = WRONG + "import sys\n" + FRAMES[how] + FRAME_FORGERY
    o = run(sandbox, code, ["assert f(1) == 2"], "f")
    assert o.status == "error" and "not allowed" in o.detail, (how, o)


def test_without_the_guards_introspection_forges_a_pass(sandbox):
    """The documented residual limit (README, "Limits"), kept visible: with only the OS layers,
    code that walks the interpreter's frames to the harness can write a verdict. This also
    proves that the attack refused above is a real one."""
    code = WRONG + "import sys\n" + FRAMES["sys._getframe"] + FRAME_FORGERY
    assert run(sandbox, code, ["assert f(1) == 2"], "f", guards=False).status == "passed"


def require_imports(layers) -> None:
    """After a uid drop, the interpreter's own files are importable through the mount
    namespace only (here they live under /root); elsewhere the case is skipped."""
    if layers["uid_drop"] and not layers["mount_namespace"]:
        pytest.skip("uid drop without a mount namespace: the interpreter's files may be unreadable")


def test_libraries_that_read_their_callers_frame_still_work(sandbox, layers):
    require_imports(layers)
    code = ("from collections import namedtuple\nimport logging, sympy\n"
            "P = namedtuple('P', 'x y')\nlogging.getLogger('t').warning('x')\n"
            "x = sympy.Symbol('x')\n"
            "def f():\n    return str(sympy.expand((x + 1) ** 2)), P(1, 2).y\n")
    o = sandbox.run(Job("t", code, ("assert f() == ('x**2 + 2*x + 1', 2)",), "f"))
    assert o.status == "passed", o


def test_trusted_library_folders_include_the_path_through_a_symlinked_environment(tmp_path,
                                                                                     monkeypatch):
    # a frame's file name is the path the module was imported by: in a symlinked virtualenv
    # that path goes through the link, so the folder must be trusted under both names
    import sys

    from analysis import _sandbox_worker as worker

    real = tmp_path / "real"
    (real / "pkg_frames").mkdir(parents=True)
    (real / "pkg_frames" / "__init__.py").write_text("")
    (tmp_path / "link").symlink_to(real)
    monkeypatch.setattr(sys, "path", [str(tmp_path / "link"), *sys.path])
    dirs = worker._library_dirs(["pkg_frames"])
    assert str(tmp_path / "link" / "pkg_frames") + os.sep in dirs
    assert str(real.resolve() / "pkg_frames") + os.sep in dirs


@pytest.mark.parametrize("guards", [True, False])
def test_standard_library_and_numpy_import(sandbox, layers, guards):
    """After the uid drop the interpreter's files (here under /root) stay importable: the
    mount namespace exposes the import folders (mbpp/928 needs _strptime, mbpp/241 numpy)."""
    require_imports(layers)
    code = ("from datetime import datetime\nimport numpy as np, fractions, zoneinfo, sqlite3\n"
            "def f(s):\n    d = datetime.strptime(s, '%Y-%m-%d')\n"
            "    return int(np.arange(d.day).sum())\n")
    o = run(sandbox, code, ["assert f('2026-01-05') == 10"], "f", guards=guards)
    assert o.status == "passed", o


def _creators(path: str) -> dict[str, str]:
    p = repr(path)
    return {
        "open": f"open({p}, 'w').write('x')\n",
        "io.FileIO": f"import io\nio.FileIO({p}, 'w').write(b'x')\n",
        "_io.open": f"import _io\n_io.open({p}, 'w').write('x')\n",
        "os.open": f"import os\nos.write(os.open({p}, os.O_WRONLY | os.O_CREAT), b'x')\n",
        "libc open": f"import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
                     f"if libc.open({p}.encode(), 0o101, 0o644) < 0:\n"
                     f"    raise OSError(ctypes.get_errno(), 'open')\n",
        "libc creat": f"import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
                      f"if libc.creat({p}.encode(), 0o644) < 0:\n"
                      f"    raise OSError(ctypes.get_errno(), 'creat')\n",
    }


@pytest.mark.parametrize("guards", [True, False])
def test_no_file_outside_the_working_directory(sandbox, layers, guards):
    """World-writable folders (/tmp, /dev/shm, /var/tmp) by every route: the guards refuse
    them, and without the guards the mount namespace (read-only host, private /tmp) does."""
    require(layers, guards, "mount_namespace")
    folders = [d for d in ("/tmp", "/dev/shm", "/var/tmp") if os.path.isdir(d)]
    for folder in folders:
        for route, code in _creators(f"{folder}/sandbox-escape-{os.getpid()}").items():
            target = f"{folder}/sandbox-escape-{os.getpid()}"
            o = run(sandbox, code, guards=guards)
            try:
                assert o.status == "error", (route, folder, o)
                assert not os.path.exists(target), (route, folder)
            finally:
                if os.path.exists(target):
                    os.remove(target)
    # the working directory is the one place it may write, and /tmp there is private and empty
    o = run(sandbox, "import os\nopen('mine', 'w').write('x')\n"
                     "raise RuntimeError(sorted(os.listdir('/tmp')), sorted(os.listdir('.')))\n",
            guards=guards)
    listing = o.detail.split("RuntimeError: ")[1].split(" (")[0]
    assert listing.endswith("['mine'])") and listing.count("sandbox-") == 1, o


def test_hostile_jobs_do_not_disturb_their_neighbours(sandbox):
    good = Job("good", "def f():\n    return 1\n", ("assert f() == 1",), "f")
    bad = [Job("loop", "while True: pass\n", ()),
           Job("kill", "import os\nos.kill(os.getppid(), 9)\n", ()),
           Job("mem", "x = ' ' * 10 ** 11\n", ()),
           Job("bomb", "import os\nwhile True: os.fork()\n", ())]
    jobs = [good, *bad, good, good]
    outcomes = list(sandbox.run_many(jobs))
    assert [o.key for o in outcomes] == [j.key for j in jobs]
    assert [o.status for o in outcomes] == ["passed", "timeout", "error", "error", "error",
                                            "passed", "passed"]


def test_a_dead_worker_is_replaced():
    with Sandbox(workers=1, timeout=2) as sb:
        still_works(sb)
        worker = sb._idle[0]
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
        o = sb.run(Job("x", "pass\n", ()))
        assert o.status == "error" and "worker died" in o.detail
        still_works(sb)


def test_a_hung_worker_is_killed_by_the_watchdog(monkeypatch):
    """If a worker stops answering (here: frozen with SIGSTOP), the run still returns."""
    import analysis.execution as execution
    monkeypatch.setattr(execution, "WATCHDOG_GRACE", 0.5)
    with Sandbox(workers=1, timeout=1) as sb:
        still_works(sb)
        worker = sb._idle[0]
        os.kill(worker.pid, signal.SIGSTOP)
        start = time.monotonic()
        o = sb.run(Job("x", "pass\n", ()))
        assert o.status == "error" and time.monotonic() - start < 10
        still_works(sb)


def test_outcomes_do_not_depend_on_the_hash_seed():
    """Set order of strings varies with the hash seed; the workers fix it, so runs agree."""
    code = "def f():\n    return list({'a', 'b', 'c', 'd', 'e', 'f'})\n"
    orders = set()
    for _ in range(3):
        with Sandbox(workers=1, timeout=5) as sb:
            o = sb.run(Job("x", code, ("raise RuntimeError(repr(f()))",), "f"))
            orders.add(o.detail.split("RuntimeError: ")[1].split(" (")[0])
    assert len(orders) == 1


def test_random_draws_are_the_same_every_run():
    import random
    first = random.Random(0).random()  # the first draw after seed(0)
    code = "import random\ndef f():\n    return random.random()\n"
    with Sandbox(workers=1, timeout=5) as sb:
        outs = sb.run_many([Job(f"r{i}", code, (f"assert f() == {first!r}",), "f") for i in range(2)])
    assert [o.status for o in outs] == ["passed", "passed"], outs
