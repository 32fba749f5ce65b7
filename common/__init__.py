"""Shared helpers of the attention-alignment toolkit.

Data flows one way: ``fetch`` -> ``dataset`` -> (method modules) -> ``results`` ->
``align`` -> ``metrics`` -> ``tables`` / ``plotting``.
"""

__all__ = ["paths", "fetch", "safe_pickle", "dataset", "align", "results", "metrics", "tables"]
