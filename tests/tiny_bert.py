"""The tiny random BertForMaskedLM (real bert-base-uncased tokenizer), built once per session."""

from __future__ import annotations

from functools import cache


@cache
def tiny_bert(seed: int = 0):
    from perturbation_based.bert_masking import tiny_random_bert
    return tiny_random_bert(seed)
