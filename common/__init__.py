"""Shared helpers of the attention-alignment toolkit.

Data flows one way: ``fetch`` -> ``dataset`` -> (method modules) -> ``results`` ->
``align`` -> ``metrics`` -> ``tables`` / ``plotting``.
"""
