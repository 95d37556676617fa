"""Write open_clip's `SimpleTokenizer` as a Hugging Face `tokenizers` tokenizer.json.

The BPE vocabulary and merges are read from the open_clip tokenizer object itself (they come from
`bpe_simple_vocab_16e6.txt.gz`), and so is the pre-tokenizer regex. What `tokenizers` cannot do
(ftfy, HTML unescaping, whitespace collapsing, lowercasing, open_clip's special-token and
truncation rules) is done by `ccsclip.engine.tokenizer.BundleTokenizer`; see its module doc.
After writing, the file is read back through `BundleTokenizer` and compared with open_clip on a
probe corpus, so a bundle never carries a tokenizer that disagrees with its model.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import regex
from open_clip.tokenizer import SimpleTokenizer
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors

from ccsclip.engine.tokenizer import (
    CLEAN_RULE,
    EOT_TOKEN,
    PAD_ID,
    SOT_TOKEN,
    TOKENIZER_KIND,
    TRUNCATION_RULE,
    BundleTokenizer,
)
from ccsclip.errors import IntegrityError, InvalidInputError
from ccsclip.fileio import atomic_write_text, sha256_file

TOKENIZER_FILE = "tokenizer.json"

# Probe corpus checked at export time; the test suite checks a much larger one.
_PROBES = [
    "a photo of a dog.",
    "  Don't   STOP\tit's\n\nfine  ",
    "&amp;lt;b&amp;gt; caf\u00e9 na\u00efve \u6771\u4eac \U0001f600 12,345.67",
    "x<start_of_text>y !!<end_of_text> it'\u017f",
    "a\u0345b " + "word " * 100,
    "",
]


def _simple_tokenizer(loaded_or_tokenizer: Any) -> SimpleTokenizer:
    """The open_clip SimpleTokenizer of a LoadedModel (or the tokenizer itself), or refuse."""
    tok = getattr(loaded_or_tokenizer, "tokenizer", loaded_or_tokenizer)
    if not isinstance(tok, SimpleTokenizer):
        raise InvalidInputError(
            f"cannot export tokenizer of type {type(tok).__name__}: only open_clip's "
            "SimpleTokenizer (CLIP BPE) is supported"
        )
    if getattr(tok.clean_fn, "__name__", "") != "_clean_lower":
        raise InvalidInputError(
            f"cannot export tokenizer clean function {tok.clean_fn!r}: only clean='lower' is "
            "reproduced by the engine"
        )
    if tok.reduction_fn is not None:
        raise InvalidInputError(
            f"cannot export tokenizer reduction_mask {tok.reduction_fn!r}: only plain "
            "truncation is reproduced by the engine"
        )
    specials = [tok.decoder[i] for i in tok.all_special_ids]
    if specials != [SOT_TOKEN, EOT_TOKEN]:
        raise InvalidInputError(
            f"cannot export tokenizer special tokens {specials}: only [{SOT_TOKEN!r}, "
            f"{EOT_TOKEN!r}] are supported"
        )
    return tok


def _context_length(loaded_or_tokenizer: Any, tok: SimpleTokenizer, given: int | None) -> int:
    spec = getattr(loaded_or_tokenizer, "spec", None)
    model_length = getattr(spec, "context_length", None)
    length = given if given is not None else model_length or tok.context_length
    if not isinstance(length, int) or isinstance(length, bool) or length < 2:
        raise InvalidInputError(
            f"context_length must be an integer >= 2 (room for sot and eot), got {length!r}"
        )
    if model_length is not None and length != model_length:
        raise InvalidInputError(
            f"context_length {length} does not match the model's {model_length}"
        )
    return length


def build_tokenizer(tok: SimpleTokenizer, context_length: int) -> Tokenizer:
    """A `tokenizers.Tokenizer` with open_clip's vocab, merges and pre-tokenizer regex.

    Its post-processor, truncation and padding make standalone use close to open_clip; the
    engine turns them off and applies open_clip's exact rules itself.
    """
    merges = [pair for pair, _ in sorted(tok.bpe_ranks.items(), key=lambda item: item[1])]
    bpe = models.BPE(
        vocab=dict(tok.encoder),
        merges=merges,
        continuing_subword_prefix="",
        end_of_word_suffix="</w>",
        fuse_unk=False,
    )
    out = Tokenizer(bpe)
    pattern = tok.pat.pattern
    if tok.pat.flags & regex.IGNORECASE:
        pattern = "(?i)" + pattern
    out.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(pattern), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    out.decoder = decoders.Sequence([decoders.ByteLevel(), decoders.Replace("</w>", " ")])
    out.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t in (SOT_TOKEN, EOT_TOKEN)]
    )
    sot, eot = tok.sot_token_id, tok.eot_token_id
    out.post_processor = processors.TemplateProcessing(
        single=f"{SOT_TOKEN} $A {EOT_TOKEN}",
        special_tokens=[(SOT_TOKEN, sot), (EOT_TOKEN, eot)],
    )
    out.enable_truncation(max_length=context_length)
    out.enable_padding(length=context_length, pad_id=PAD_ID, pad_token=tok.decoder[PAD_ID])
    if (out.token_to_id(SOT_TOKEN), out.token_to_id(EOT_TOKEN)) != (sot, eot):
        raise IntegrityError(
            f"special tokens got ids {(out.token_to_id(SOT_TOKEN), out.token_to_id(EOT_TOKEN))}, "
            f"open_clip uses {(sot, eot)}"
        )
    return out


def write_tokenizer(
    loaded_or_tokenizer: Any, path: str | os.PathLike[str], context_length: int | None = None
) -> dict[str, Any]:
    """Write tokenizer.json at `path` and return its manifest entry.

    `loaded_or_tokenizer` is a LoadedModel or an open_clip SimpleTokenizer; `context_length`
    defaults to the model's (and must equal it when a LoadedModel is given).
    """
    tok = _simple_tokenizer(loaded_or_tokenizer)
    length = _context_length(loaded_or_tokenizer, tok, context_length)
    path = Path(path)
    atomic_write_text(path, build_tokenizer(tok, length).to_str(pretty=False))
    entry = {
        "kind": TOKENIZER_KIND,
        "file": path.name,
        "sha256": sha256_file(path),
        "context_length": length,
        "vocab_size": len(tok.encoder),
        "sot_id": tok.sot_token_id,
        "eot_id": tok.eot_token_id,
        "pad_id": PAD_ID,
        "clean": CLEAN_RULE,
        "truncation": TRUNCATION_RULE,
    }
    engine = BundleTokenizer(path, entry)
    expected = tok(_PROBES, context_length=length).numpy()
    actual = engine(_PROBES)
    if not (actual == expected).all():
        bad = [text for text, a, e in zip(_PROBES, actual, expected, strict=True) if (a != e).any()]
        raise IntegrityError(f"exported tokenizer disagrees with open_clip on {bad!r}")
    return entry
