"""open_clip's `SimpleTokenizer`, torch-free: Python text cleaning + a `tokenizers` BPE.

The split of the work (the `tokenizers` library cannot do the first part):

* Python (`clean_text`): `ftfy.fix_text`, `html.unescape` twice, strip, collapse whitespace runs to
  one space, `str.lower()`, exactly as open_clip's `_clean_lower`. ftfy's mojibake repair has no
  equivalent among `tokenizers`' normalizers, and an NFC normalizer would be wrong: open_clip
  unescapes HTML after ftfy's NFC, so decomposed text can survive. (ftfy is therefore a serving
  dependency.) One more step: U+0345 becomes a space, because open_clip's case-insensitive regex
  matches it with none of its alternatives (it is skipped like whitespace) while Oniguruma, the
  regex engine of `tokenizers`, treats it as punctuation.
* `tokenizers` (tokenizer.json, written by `ccsclip.export.tokenizer`): open_clip's pre-tokenizer
  regex with `(?i)` (its `re.IGNORECASE` matters: `'ſ` is a contraction and `<ſtart_of_text>`
  one pre-token), ByteLevel byte-to-unicode mapping, and BPE with the `</w>` end-of-word suffix.
* Python again (`BundleTokenizer.__call__`): a pre-token that *is* a special token's text becomes
  that token's id (open_clip matches the special tokens inside its regex, so a preceding
  punctuation run can swallow the `<`; `tokenizers`' added-token matching would not reproduce
  that), then `[sot] + ids + [eot]`, truncation to the first `context_length` ids with `eot`
  forced into the last slot, and right padding with 0.

Known limit: characters assigned in Unicode versions newer than the Oniguruma tables (about
17,500 code points of recently encoded scripts) can split differently from open_clip, whose own
split depends on the installed `regex` module's Unicode version.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ftfy
import numpy as np
from tokenizers import Tokenizer

from ccsclip.errors import IntegrityError, InvalidInputError, NotFoundError
from ccsclip.fileio import sha256_file

TOKENIZER_KIND = "open_clip-simple-bpe"
SOT_TOKEN = "<start_of_text>"
EOT_TOKEN = "<end_of_text>"
PAD_ID = 0
TRUNCATION_RULE = "keep_first_force_eot"
CLEAN_RULE = "ftfy+html_unescape2+whitespace+lower"
# open_clip's regex also splits '<ſtart_of_text>' (U+017F folds to 's') as one pre-token, but its
# BPE cache maps only the exact text to the special id: the rest is ordinary BPE, as here.
_SPECIAL_TAIL = "_of_text>"  # in every special token's text; absent from a text: no special


def clean_text(text: str) -> str:
    """open_clip's 'lower' cleaning, plus the U+0345 fix-up that makes the split match."""
    text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text)).strip()
    text = " ".join(text.split()).strip().lower()
    return text.replace("\u0345", " ")


def _tokenizer_file_config(path: Path) -> dict[str, Any]:
    """Context length from tokenizer.json's fixed padding (written there by the exporter)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    padding = data.get("padding") or {}
    fixed = (padding.get("strategy") or {}).get("Fixed") if isinstance(padding, dict) else None
    if not isinstance(fixed, int) or fixed < 2:
        raise InvalidInputError(
            f"tokenizer file {str(path)!r} has no fixed padding length (context length); write it "
            "with ccsclip.export.tokenizer.write_tokenizer or pass its manifest entry as config"
        )
    return {"context_length": fixed}


class BundleTokenizer:
    """Texts to open_clip's token ids (int64 [N, context_length]) without torch.

    `config` is the manifest entry written by `ccsclip.export.tokenizer.write_tokenizer`; when it
    is given, the file's sha256 and the special ids are checked against it (IntegrityError).
    Without it, the context length comes from the file's fixed padding length.
    """

    def __init__(self, path: str | Path, config: Mapping[str, Any] | None = None) -> None:
        path = Path(path)
        if not path.is_file():
            raise NotFoundError(f"tokenizer file {str(path)!r} does not exist")
        if config is not None:
            self._check_config(path, config)
            context_length = config["context_length"]
        else:
            context_length = _tokenizer_file_config(path)["context_length"]
        if not isinstance(context_length, int) or context_length < 2:
            raise InvalidInputError(
                f"context_length must be an integer >= 2 (room for sot and eot), got "
                f"{context_length!r}"
            )
        self.path = path
        self.context_length = context_length
        self._tok = Tokenizer.from_file(str(path))
        # Truncation, padding and specials are applied below, with open_clip's rules.
        self._tok.no_truncation()
        self._tok.no_padding()
        self._tok.encode_special_tokens = True
        sot, eot = self._tok.token_to_id(SOT_TOKEN), self._tok.token_to_id(EOT_TOKEN)
        if sot is None or eot is None:
            raise InvalidInputError(
                f"tokenizer file {str(path)!r} lacks the special tokens {SOT_TOKEN!r} and "
                f"{EOT_TOKEN!r}: it is not an open_clip SimpleTokenizer export"
            )
        self.sot_id, self.eot_id, self.pad_id = int(sot), int(eot), PAD_ID
        if config is not None and (config["sot_id"], config["eot_id"]) != (sot, eot):
            raise IntegrityError(
                f"tokenizer file {str(path)!r} has sot/eot ids {(sot, eot)}, its manifest entry "
                f"says {(config['sot_id'], config['eot_id'])}"
            )
        self._specials = {SOT_TOKEN: self.sot_id, EOT_TOKEN: self.eot_id}

    @staticmethod
    def _check_config(path: Path, config: Mapping[str, Any]) -> None:
        missing = [
            k for k in ("kind", "sha256", "context_length", "sot_id", "eot_id") if k not in config
        ]
        if missing:
            raise InvalidInputError(f"tokenizer config lacks the fields {missing}")
        if config["kind"] != TOKENIZER_KIND:
            raise InvalidInputError(
                f"tokenizer kind {config['kind']!r} is not supported: the engine reads "
                f"{TOKENIZER_KIND!r}"
            )
        for field, expected in (
            ("pad_id", PAD_ID),
            ("truncation", TRUNCATION_RULE),
            ("clean", CLEAN_RULE),
        ):
            if field in config and config[field] != expected:
                raise InvalidInputError(
                    f"tokenizer {field} {config[field]!r} is not supported: the engine does "
                    f"{expected!r}"
                )
        actual = sha256_file(path)
        if actual != config["sha256"]:
            raise IntegrityError(
                f"tokenizer file {str(path)!r} has sha256 {actual}, its manifest entry says "
                f"{config['sha256']}"
            )

    def _encode_with_specials(self, text: str) -> list[int]:
        """Slow path for texts that contain a special token's text: map those pre-tokens."""
        pre_tokenizer = self._tok.pre_tokenizer
        assert pre_tokenizer is not None
        ids: list[int] = []
        for _, (start, end) in pre_tokenizer.pre_tokenize_str(text):
            piece = text[start:end]
            special = self._specials.get(piece)
            if special is not None:
                ids.append(special)
            else:
                ids.extend(self._tok.encode(piece, add_special_tokens=False).ids)
        return ids

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """BPE ids of each text without sot/eot and without truncation."""
        cleaned = [clean_text(text) for text in texts]
        plain = [i for i, text in enumerate(cleaned) if _SPECIAL_TAIL not in text]
        out: list[list[int]] = [[] for _ in cleaned]
        if plain:
            encodings = self._tok.encode_batch_fast(
                [cleaned[i] for i in plain], add_special_tokens=False
            )
            for i, encoding in zip(plain, encodings, strict=True):
                out[i] = encoding.ids
        for i, text in enumerate(cleaned):
            if _SPECIAL_TAIL in text:
                out[i] = self._encode_with_specials(text)
        return out

    def __call__(self, texts: str | Sequence[str]) -> np.ndarray:
        """int64 [N, context_length]: sot, ids, eot; truncated with eot last; padded with 0."""
        if isinstance(texts, str):
            texts = [texts]
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise InvalidInputError(f"texts[{index}] is a {type(text).__name__}, expected str")
        length = self.context_length
        result = np.full((len(texts), length), self.pad_id, dtype=np.int64)
        for row, ids in enumerate(self.encode(texts)):
            tokens = [self.sot_id, *ids, self.eot_id]
            if len(tokens) > length:
                tokens = tokens[:length]
                tokens[-1] = self.eot_id
            result[row, : len(tokens)] = tokens
        return result

    def trim(self, ids: np.ndarray) -> np.ndarray:
        """ids [N, context] cut after the batch's last end-of-text token (a view, no copy).

        For text towers exported with a dynamic length (manifest `text.dynamic_length`): a causal
        tower pooled at EOT gives the same embeddings on these ids, at a fraction of the cost.
        """
        if ids.size == 0:
            return ids
        # EOT has the highest id of the vocabulary, the argmax the towers pool at.
        return ids[:, : int(ids.argmax(axis=1).max()) + 1]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of one row of ids: after a leading sot, up to the first eot (padding is id 0,
        which is also the real token '!', so only eot marks the end)."""
        row = [int(i) for i in ids]
        if row and row[0] == self.sot_id:
            row = row[1:]
        if self.eot_id in row:
            row = row[: row.index(self.eot_id)]
        return self._tok.decode(row, skip_special_tokens=False)
