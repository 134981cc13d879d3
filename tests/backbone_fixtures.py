"""Tiny random backbones of every encoder family mtbert supports, each with a tokenizer of its own family.

Everything is built in code (no downloads: CI has no network): a 2-layer, 32-wide configuration of the family's
``PretrainedConfig`` and a tokenizer of the family's own class (WordPiece for BERT/ELECTRA/DistilBERT/MPNet,
byte-level BPE for RoBERTa and ModernBERT, SentencePiece-style Unigram for XLM-R/ALBERT/DeBERTa-v3) over a
vocabulary of ~100-200 pieces, so that a joined pair carries the family's own special tokens (``</s></s>`` for
RoBERTa/XLM-R/MPNet, ``[SEP]`` elsewhere).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

from transformers import (
    AlbertConfig,
    AlbertTokenizer,
    BertConfig,
    BertTokenizer,
    DebertaV2Config,
    DebertaV2Tokenizer,
    DistilBertConfig,
    DistilBertTokenizer,
    ElectraConfig,
    ModernBertConfig,
    MPNetConfig,
    MPNetTokenizer,
    PretrainedConfig,
    RobertaConfig,
    RobertaTokenizer,
    TokenizersBackend,
    XLMRobertaConfig,
    XLMRobertaTokenizer,
)

SENTENCES = [
    "a fine film .",
    "dull",
    "the movie was good , the cast was not .",
    "why ?",
]
PAIRS = [
    ("how do i learn python ?", "what is the best way to learn python ?"),
    ("two dogs play on the grass .", "two black dogs are playing on the grass ."),
    ("why ?", "a band is playing on a stage ."),
    ("the film was good .", "the movie was bad ."),
]
WORDS = sorted({word for text in SENTENCES + [t for pair in PAIRS for t in pair] for word in text.split()})
CHARS = list("abcdefghijklmnopqrstuvwxyz.,?!'")
HIDDEN = 32
LAYERS = 2
MAX_POSITIONS = 64


def _unique(tokens: list[str]) -> list[str]:
    return list(dict.fromkeys(tokens))


def wordpiece_vocab(specials: list[str]) -> dict[str, int]:
    """Specials, whole words, single characters and ``##`` continuations: every lowercase text tokenizes."""
    pieces = _unique(specials + WORDS + CHARS + [f"##{c}" for c in CHARS])
    return {piece: i for i, piece in enumerate(pieces)}


def unigram_vocab(specials: list[str], trailing: list[str] = ()) -> list[tuple[str, float]]:
    """A SentencePiece-style Unigram vocabulary: ``▁word`` pieces and characters (specials score 0)."""
    pieces = [(s, 0.0) for s in specials] + [(f"▁{w}", -2.0) for w in WORDS] + [("▁", -3.0)]
    pieces += [(c, -5.0) for c in CHARS if f"▁{c}" not in {p for p, _ in pieces}]
    return pieces + [(s, 0.0) for s in trailing]


def byte_level_bpe(specials: list[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A byte-level BPE vocabulary and merges (GPT-2 style, ``Ġ`` marks a leading space) that merge the prefixes of
    each word (with and without its leading space) left to right; whole words mostly, never unknown pieces."""
    vocab = {token: i for i, token in enumerate(specials)}
    merges: list[tuple[str, str]] = []
    for c in ["Ġ", *CHARS]:
        vocab.setdefault(c, len(vocab))
    for word in WORDS:
        for start in (word, f"Ġ{word}"):
            symbol = start[0]
            for c in start[1:]:
                merge = (symbol, c)
                if merge not in merges:
                    merges.append(merge)
                symbol += c
                vocab.setdefault(symbol, len(vocab))
    return vocab, merges


def bert_tokenizer() -> BertTokenizer:
    return BertTokenizer(vocab=wordpiece_vocab(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))


def distilbert_tokenizer() -> DistilBertTokenizer:
    return DistilBertTokenizer(vocab=wordpiece_vocab(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))


def mpnet_tokenizer() -> MPNetTokenizer:
    return MPNetTokenizer(vocab=wordpiece_vocab(["<s>", "<pad>", "</s>", "<unk>", "[UNK]", "<mask>"]))


def roberta_tokenizer() -> RobertaTokenizer:
    vocab, merges = byte_level_bpe(["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    return RobertaTokenizer(vocab=vocab, merges=merges)


def xlm_roberta_tokenizer() -> XLMRobertaTokenizer:
    return XLMRobertaTokenizer(vocab=unigram_vocab(["<s>", "<pad>", "</s>", "<unk>"], trailing=["<mask>"]))


def albert_tokenizer() -> AlbertTokenizer:
    return AlbertTokenizer(vocab=unigram_vocab(["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"]))


def deberta_v2_tokenizer() -> DebertaV2Tokenizer:
    # DeBERTa-v3's layout: [PAD] 0, [CLS] 1, [SEP] 2, [UNK] 3
    return DebertaV2Tokenizer(vocab=unigram_vocab(["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"]), unk_id=3)


def modernbert_tokenizer() -> TokenizersBackend:
    """ModernBERT ships a plain ``tokenizer.json`` (byte-level BPE, ``[CLS] $A [SEP]``), loaded by AutoTokenizer as
    the generic ``TokenizersBackend`` (``PreTrainedTokenizerFast``): built here the same way."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    specials = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"]
    vocab, merges = byte_level_bpe(specials)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    backend.add_special_tokens(specials)
    return TokenizersBackend(
        tokenizer_object=backend,
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        mask_token="[MASK]",
        model_input_names=["input_ids", "attention_mask"],
    )


def _ids(tokenizer) -> dict[str, int]:
    return {"pad_token_id": tokenizer.pad_token_id}


def bert_config(tokenizer) -> PretrainedConfig:
    return BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=MAX_POSITIONS,
        type_vocab_size=2,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        **_ids(tokenizer),
    )


def electra_config(tokenizer) -> PretrainedConfig:
    # embedding_size < hidden_size: ELECTRA projects its embeddings up (``embeddings_project``)
    return ElectraConfig(
        vocab_size=len(tokenizer),
        embedding_size=16,
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=MAX_POSITIONS,
        type_vocab_size=2,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        **_ids(tokenizer),
    )


def roberta_config(tokenizer, cls=RobertaConfig) -> PretrainedConfig:
    return cls(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=MAX_POSITIONS,
        type_vocab_size=1,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
        **_ids(tokenizer),
    )


def xlm_roberta_config(tokenizer) -> PretrainedConfig:
    return roberta_config(tokenizer, XLMRobertaConfig)


def mpnet_config(tokenizer) -> PretrainedConfig:
    return MPNetConfig(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=MAX_POSITIONS,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
        **_ids(tokenizer),
    )


def deberta_v2_config(tokenizer) -> PretrainedConfig:
    """DeBERTa-v3's settings: relative attention with log buckets, no absolute positions, no segment embeddings."""
    return DebertaV2Config(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=MAX_POSITIONS,
        relative_attention=True,
        position_buckets=16,
        max_relative_positions=-1,
        pos_att_type=["p2c", "c2p"],
        position_biased_input=False,
        norm_rel_ebd="layer_norm",
        share_att_key=True,
        type_vocab_size=0,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        **_ids(tokenizer),
    )


def distilbert_config(tokenizer) -> PretrainedConfig:
    return DistilBertConfig(
        vocab_size=len(tokenizer),
        dim=HIDDEN,
        n_layers=LAYERS,
        n_heads=2,
        hidden_dim=37,
        max_position_embeddings=MAX_POSITIONS,
        dropout=0.0,
        attention_dropout=0.0,
        **_ids(tokenizer),
    )


def albert_config(tokenizer) -> PretrainedConfig:
    # ALBERT shares one layer's weights across depth (num_hidden_groups=1) and factorises its embeddings
    return AlbertConfig(
        vocab_size=len(tokenizer),
        embedding_size=16,
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=2,
        intermediate_size=37,
        num_hidden_groups=1,
        inner_group_num=1,
        max_position_embeddings=MAX_POSITIONS,
        type_vocab_size=2,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        **_ids(tokenizer),
    )


def modernbert_config(tokenizer) -> PretrainedConfig:
    # one global and one local (sliding-window) attention layer, as ModernBERT alternates them
    return ModernBertConfig(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=2,
        intermediate_size=48,
        max_position_embeddings=MAX_POSITIONS,
        global_attn_every_n_layers=2,
        local_attention=8,
        pad_token_id=tokenizer.pad_token_id,
        cls_token_id=tokenizer.cls_token_id,
        sep_token_id=tokenizer.sep_token_id,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
        embedding_dropout=0.0,
        attention_dropout=0.0,
        mlp_dropout=0.0,
    )


@dataclass(frozen=True)
class Family:
    """One encoder family: how to build it, and what mtbert must make of it."""

    name: str
    make_config: Callable[[object], PretrainedConfig]
    make_tokenizer: Callable[[], object]
    attn: str  # the attention implementation mtbert picks by default
    segments: bool  # has segment (token type) embeddings
    checkpointing: bool  # supports gradient checkpointing
    per_layer: bool  # has per-layer parameters (layer-wise learning-rate decay applies)
    between: list[str] = field(default_factory=lambda: ["[SEP]"])  # special tokens between a joined pair's sentences
    layer_prefix: str = "encoder.encoder.layer.{}."  # where layer i's parameters live in a MultitaskBertModel
    embeddings_prefix: str = "encoder.embeddings."
    # other parameters that layer-wise decay puts with the embeddings (below layer 0) or above the top layer
    below_layers: tuple[str, ...] = ()
    above_layers: tuple[str, ...] = ()
    # the config keys of the family's dropout: (hidden / residual ones, attention ones)
    dropout_keys: tuple[tuple[str, ...], tuple[str, ...]] = (
        ("hidden_dropout_prob",),
        ("attention_probs_dropout_prob",),
    )

    def __str__(self) -> str:
        return self.name


FAMILIES = [
    Family("bert", bert_config, bert_tokenizer, "sdpa", True, True, True),
    Family("roberta", roberta_config, roberta_tokenizer, "sdpa", False, True, True, ["</s>", "</s>"]),
    Family("xlm-roberta", xlm_roberta_config, xlm_roberta_tokenizer, "sdpa", False, True, True, ["</s>", "</s>"]),
    Family(
        "mpnet",
        mpnet_config,
        mpnet_tokenizer,
        "eager",
        False,
        False,
        True,
        ["</s>", "</s>"],
        below_layers=("encoder.encoder.relative_attention_bias.",),  # relative positions, read by every layer
    ),
    Family(
        "deberta-v2",
        deberta_v2_config,
        deberta_v2_tokenizer,
        "eager",
        False,
        True,
        True,
        below_layers=("encoder.encoder.rel_embeddings.", "encoder.encoder.LayerNorm."),  # relative positions
    ),
    Family(  # ELECTRA's tokenizer is BERT's
        "electra",
        electra_config,
        bert_tokenizer,
        "sdpa",
        True,
        True,
        True,
        below_layers=("encoder.embeddings_project.",),  # the embeddings' projection up to the hidden width
    ),
    Family(
        "distilbert",
        distilbert_config,
        distilbert_tokenizer,
        "sdpa",
        False,
        True,
        True,
        layer_prefix="encoder.transformer.layer.{}.",
        dropout_keys=(("dropout",), ("attention_dropout",)),
    ),
    Family("albert", albert_config, albert_tokenizer, "sdpa", True, False, False),
    Family(
        "modernbert",
        modernbert_config,
        modernbert_tokenizer,
        "sdpa",
        False,
        True,
        True,
        layer_prefix="encoder.layers.{}.",
        dropout_keys=(("embedding_dropout", "mlp_dropout"), ("attention_dropout",)),
        above_layers=("encoder.final_norm.",),
    ),
]
BY_NAME = {family.name: family for family in FAMILIES}


@functools.cache
def tokenizer_of(name: str):
    return BY_NAME[name].make_tokenizer()


def encoder_config_of(name: str) -> PretrainedConfig:
    return BY_NAME[name].make_config(tokenizer_of(name))


# Every head kind: a sentence classifier; pair classification read separately ([u; v; |u-v|; u*v]), by cosine, as a
# joined pair with and without separator, and both ways (dual); similarity by a dual head and by a separate head.
ALL_HEADS = {
    "sst": {"kind": "sentence_classification", "num_labels": 5, "pooling": "cls"},
    "separate": {"kind": "pair_classification", "pair_encoding": "separate", "pair_features": "full"},
    "cosine": {"kind": "pair_classification", "pair_encoding": "cosine", "pooling": "mean"},
    "concat_sep": {"kind": "pair_classification", "pair_encoding": "concat_sep"},
    "concat_nosep": {"kind": "pair_classification", "pair_encoding": "concat_nosep", "pooling": "mean"},
    "dual": {"kind": "pair_classification", "pair_encoding": "dual"},
    "sts": {"kind": "pair_regression", "pair_encoding": "dual", "regression_loss": "cosent"},
    "sts_separate": {"kind": "pair_regression", "pair_encoding": "separate"},
}
for _spec in ALL_HEADS.values():
    _spec["classifier_dropout"] = 0.0
