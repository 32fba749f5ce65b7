"""Do code LLMs look where programmers look? One instrument for the twelve attribution methods
of the FSE 2024 study (and more) on any causal LM or OpenAI-compatible API.

    import attention_alignment as aa
    aa.attribute("smollm2", "Write a function to reverse a list.", "saliency_coding").show()
    aa.methods()                     # the catalogue as a table
    aa.load(path).score()            # a result file against the human labels
    aa.run(family="gradient", model="smollm2", limit=5)   # result files, as the CLI

Command line: ``python -m attention_alignment --help``.
"""

from .api import attribute, load, run, task_for
from .catalogue import get as method
from .catalogue import table as methods

__all__ = ["attribute", "load", "run", "task_for", "method", "methods"]
