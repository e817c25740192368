"""Text transformers from `transformers` configs (random weights): int64 `input_ids` and
`attention_mask`, 32 tokens, returning the hidden states (and the pooled output when the
architecture has one).

BERT-tiny is Google's 2-layer, 128-wide BERT; DistilBERT, MobileBERT and ALBERT keep their
architecture (distilled 6-layer stack, bottlenecks, factorized and shared layers) sized down.
ALBERT keeps its tanh-approximated GELU (`gelu_new`), MobileBERT its NoNorm and ReLU. BERT-tiny
and DistilBERT use transformers' default attention (SDPA), MobileBERT and ALBERT the eager one
(explicit batched MatMul, masking and Softmax): both paths reach the converters.
"""

from __future__ import annotations

import torch

from benchmarks.zoo._common import Entry, seeded, text_input
from benchmarks.zoo._vision import transformers

MODULE = "benchmarks.zoo.text"
LENGTH = 32
VOCAB = 30522  # BERT's WordPiece vocabulary


class Encoder(torch.nn.Module):
    """A transformers encoder called as a device calls it: ids and mask in, tensors out."""

    def __init__(self, model, pooled: bool):
        super().__init__()
        self.model, self.pooled = model, pooled

    def forward(self, input_ids, attention_mask):
        result = self.model(input_ids=input_ids, attention_mask=attention_mask)
        if self.pooled:
            return result.last_hidden_state, result.pooler_output
        return result.last_hidden_state


@seeded
def bert_tiny():
    t = transformers()
    config = t.BertConfig(vocab_size=VOCAB, hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
                          intermediate_size=512, max_position_embeddings=512)
    return Encoder(t.BertModel(config), pooled=True)


@seeded
def distilbert():
    t = transformers()
    config = t.DistilBertConfig(vocab_size=VOCAB, dim=256, n_layers=3, n_heads=4, hidden_dim=1024,
                                max_position_embeddings=512)
    return Encoder(t.DistilBertModel(config), pooled=False)


@seeded
def mobilebert():
    t = transformers()
    config = t.MobileBertConfig(vocab_size=VOCAB, hidden_size=256, embedding_size=64, num_hidden_layers=4,
                                num_attention_heads=4, intermediate_size=256, intra_bottleneck_size=64,
                                true_hidden_size=64, num_feedforward_networks=2, attn_implementation="eager")
    return Encoder(t.MobileBertModel(config), pooled=True)


@seeded
def albert():
    t = transformers()
    config = t.AlbertConfig(vocab_size=VOCAB, embedding_size=64, hidden_size=256, num_hidden_layers=4,
                            num_attention_heads=4, intermediate_size=1024, hidden_act="gelu_new",
                            attn_implementation="eager")
    return Encoder(t.AlbertModel(config), pooled=True)


ENTRIES = [
    Entry("bert_tiny", "text", f"{MODULE}:bert_tiny", "transformers", *text_input(LENGTH, VOCAB), outputs=2),
    Entry("distilbert", "text", f"{MODULE}:distilbert", "transformers", *text_input(LENGTH, VOCAB)),
    Entry("mobilebert", "text", f"{MODULE}:mobilebert", "transformers", *text_input(LENGTH, VOCAB), outputs=2),
    Entry("albert", "text", f"{MODULE}:albert", "transformers", *text_input(LENGTH, VOCAB), outputs=2),
]
