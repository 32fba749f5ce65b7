"""Methods that fail on purpose inside a Ray worker (tests/test_ray_engine.py): one kills its
worker process once, the other raises a bug while a marker file exists. Importable by the
workers (this checkout is on their path), so Ray ships them by reference."""

from __future__ import annotations

import os
from dataclasses import dataclass

from common.code_units import words
from common.method import Attribution, Method, Options


@dataclass(frozen=True)
class FaultOptions(Options):
    marker: str = ""   # the fault happens while this file exists
    task: str = ""     # on this task id


class _Fault(Method):
    family = "perturbation"
    needs = "generator"
    cost = "none"
    Options = FaultOptions

    def attribute(self, task, backend) -> Attribution:
        if task.task_id == self.options.task and os.path.exists(self.options.marker):
            self.fault()
        spans = words(task.prompt, task.region)
        return Attribution(spans, [float(b - a) for a, b in spans], generation="")

    def fault(self):
        raise NotImplementedError


class KillWorkerOnce(_Fault):
    """Kills the process it runs in (a worker crash), once: the marker is claimed first."""

    name = "kill_worker_once"

    def fault(self):
        try:
            os.rename(self.options.marker, self.options.marker + ".claimed")
        except FileNotFoundError:
            return  # another attempt claimed it
        os._exit(1)


class BugWhileMarked(_Fault):
    """Raises an ordinary exception (a bug) while the marker exists."""

    name = "bug_while_marked"

    def fault(self):
        raise ValueError("a bug in the method")
