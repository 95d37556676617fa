"""Torch-free tokenizer and image preprocessing: exact parity with open_clip 3.3.0.

The engine's versions must give open_clip's token ids exactly and its pixels to float32 rounding,
or a served model sees inputs it was never evaluated on.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from ccsclip.engine.preprocess import ImagePreprocessor
from ccsclip.engine.tokenizer import BundleTokenizer
from ccsclip.errors import IntegrityError, InvalidInputError
from ccsclip.export.preprocess import preprocess_config
from ccsclip.export.tokenizer import write_tokenizer

LONG = " ".join(f"word{i} and more" for i in range(60))
CORPUS = [
    # plain captions and templates
    "a photo of a dog.",
    "a photo of a {}.",
    "A PHOTO OF A CAT",
    "a red circle on a striped background",
    "the quick brown fox jumps over the lazy dog",
    "itap of a small car",
    "a bad photo of the large square, top-left",
    # apostrophes and contractions
    "don't",
    "it's",
    "I'm sure they'll say we'd've gone",
    "you're, we've, he'd, she'll",
    "DON'T STOP",
    "rock 'n' roll",
    "o'clock o’clock",
    "it'ſ a long s",
    "'s 't 're",
    # punctuation
    "hello, world!!!",
    "wait... what?!",
    "(parenthesised) [bracketed] {braced}",
    "semi;colon:colon--dash — em – en",
    "#hashtag @mention $100 50% a&b",
    "path/to/file.txt and C:\\windows\\system32",
    "\"quoted\" and 'single quoted'",
    "e-mail: someone@example.com; url: https://example.com/a?b=c&d=e",
    "___underscores___ and ***stars***",
    # numbers
    "3.14159",
    "1,234,567.89",
    "2024-01-31 12:34:56",
    "v2.0.1-rc3",
    "x1y2z3",
    "٣٤٥ ١٢",
    "½ ¼ ² ³ Ⅻ ①",
    # html entities
    "&amp;",
    "fish &amp; chips",
    "&lt;b&gt;bold&lt;/b&gt;",
    "&amp;lt;double&amp;gt;",
    "caf&eacute; &#233; &#x00E9;",
    "&nbsp;non&nbsp;breaking&nbsp;",
    "&quot;quoted&quot; &#39;single&#39;",
    # unicode: accents, CJK, emoji, other scripts
    "café naïve résumé",
    "cafe\u0301 (decomposed accent)",
    "Straße Σίσυφος ΟΔΟΣ",
    "İstanbul",
    "東京タワーの写真",
    "一只猫坐在垫子上",
    "고양이 사진",
    "фотография собаки",
    "صورة قطة",
    "चित्र बिल्ली का",
    "😀😃😄 emoji party 🎉",
    "👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈",
    "ﬁne ligature ﬀ",
    "zero\u200bwidth and \ufeffbom",
    "mojibake: cafÃ© â€™",
    "ypogegrammeni a\u0345b",
    # whitespace
    "multiple   spaces   here",
    "tabs\tand\nnewlines\r\nmixed",
    "   leading and trailing   ",
    "\u00a0nbsp\u3000ideographic space\u2003em space",
    "line1\n\n\nline2",
    "",
    " ",
    "\t\n  \r\n",
    # special tokens' text in user input
    "<start_of_text>",
    "a <end_of_text> b",
    "!!<start_of_text>",
    "x<end_of_text>y<end_of_text>",
    "<START_OF_TEXT> shouted",
    "<ſtart_of_text>",
    "<|endoftext|>",
    # long texts (truncation)
    LONG,
    "a " * 200,
    "supercalifragilisticexpialidocious " * 20,
    "🙂" * 100,
    "东京" * 80,
]
TOKENIZER_MODELS = ["ccsclip-tiny", "ccsclip-organism", "ViT-B-32"]


@pytest.fixture(scope="module")
def organism():
    from ccsclip.models import load_model

    return load_model("ccsclip-organism")


@pytest.fixture(scope="module")
def loaded_by_name(tiny, organism, vit_b32):
    return {"ccsclip-tiny": tiny, "ccsclip-organism": organism, "ViT-B-32": vit_b32}


def test_corpus_is_broad():
    assert len(CORPUS) >= 60
    assert len(set(CORPUS)) == len(CORPUS)


@pytest.mark.parametrize("name", TOKENIZER_MODELS)
def test_tokenizer_ids_equal_open_clip(name, loaded_by_name, tmp_path):
    loaded = loaded_by_name[name]
    length = loaded.spec.context_length
    entry = write_tokenizer(loaded, tmp_path / "tokenizer.json")
    assert entry["context_length"] == length
    assert (entry["sot_id"], entry["eot_id"], entry["pad_id"]) == (49406, 49407, 0)
    assert entry["file"] == "tokenizer.json"
    expected = loaded.tokenizer(CORPUS).numpy()
    assert expected.shape == (len(CORPUS), length)
    for engine in (
        BundleTokenizer(tmp_path / "tokenizer.json", entry),
        BundleTokenizer(tmp_path / "tokenizer.json"),
    ):
        ids = engine(CORPUS)
        assert ids.dtype == np.int64 and ids.shape == expected.shape
        wrong = [text for text, a, b in zip(CORPUS, ids, expected, strict=True) if (a != b).any()]
        assert wrong == []
    # the corpus really exercises truncation (eot forced last) and padding
    assert (ids[:, -1] == entry["eot_id"]).sum() >= 4
    assert (ids[:, -1] == 0).sum() >= 40


def test_tokenizer_special_text_and_decode(tiny, tmp_path):
    """User text equal to a special token maps to its id, as in open_clip; '!!<' does not."""
    entry = write_tokenizer(tiny.tokenizer, tmp_path / "tok.json", 16)
    engine = BundleTokenizer(tmp_path / "tok.json", entry)
    row = engine(["a <end_of_text> b", "!!<start_of_text>"])
    assert list(row[0, :5]) == [49406, 320, 49407, 321, 49407]
    assert 49406 not in row[1, 1:]
    ids = engine(["a photo of a dog, don't"])[0]
    assert engine.decode(ids) == tiny.tokenizer.decode(ids[1 : list(ids).index(49407)].tolist())


def test_tokenizer_file_checks(tiny, tmp_path):
    path = tmp_path / "tokenizer.json"
    entry = write_tokenizer(tiny, path)
    with pytest.raises(InvalidInputError, match="context_length 77 does not match"):
        write_tokenizer(tiny, tmp_path / "other.json", 77)
    with pytest.raises(InvalidInputError, match="kind"):
        BundleTokenizer(path, {**entry, "kind": "sentencepiece"})
    with pytest.raises(InvalidInputError, match="texts\\[1\\]"):
        BundleTokenizer(path, entry)(["ok", 3])
    data = json.loads(path.read_text())
    vocab = data["model"]["vocab"]
    vocab["a</w>"], vocab["b</w>"] = vocab["b</w>"], vocab["a</w>"]  # a silent corruption
    path.write_text(json.dumps(data))
    with pytest.raises(IntegrityError, match="sha256"):
        BundleTokenizer(path, entry)


def _images(seed: int = 0) -> list[tuple[str, Image.Image]]:
    """Random images of several sizes and aspect ratios, in every mode a caller may send."""
    rng = np.random.default_rng(seed)
    out = []
    for width, height in [(32, 32), (17, 50), (300, 200), (640, 480), (1, 1), (224, 224), (50, 3)]:
        rgb = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        rgba = Image.fromarray(rng.integers(0, 256, (height, width, 4), dtype=np.uint8))
        i16 = rng.integers(0, 1024, (height, width), dtype="<u2").tobytes()
        for mode, image in [
            ("RGB", rgb),
            ("L", rgb.convert("L")),
            ("RGBA", rgba),
            ("P", rgb.convert("P", palette=Image.Palette.ADAPTIVE)),
            ("CMYK", rgb.convert("CMYK")),
            ("I;16", Image.frombytes("I;16", (width, height), i16)),
        ]:
            assert image.mode == mode
            out.append((f"{width}x{height} {mode}", image))
    return out


@pytest.mark.parametrize("which", ["tiny", "vit_b32"])
def test_image_preprocess_equals_open_clip(which, request):
    loaded = request.getfixturevalue(which)
    cfg = preprocess_config(loaded)
    size = loaded.spec.image_size
    assert cfg["size"] == [size, size] and cfg["interpolation"] == "bicubic"
    assert json.loads(json.dumps(cfg)) == cfg
    engine = ImagePreprocessor(cfg)
    images = _images()
    batch = engine([image for _, image in images])
    assert batch.dtype == np.float32 and batch.shape == (len(images), 3, size, size)
    errors = {
        key: float(np.abs(loaded.preprocess(image).numpy() - got).max())
        for (key, image), got in zip(images, batch, strict=True)
    }
    assert max(errors.values()) <= 1e-5, {k: v for k, v in errors.items() if v > 1e-5}


@pytest.mark.parametrize(
    "raw",
    [
        {"size": 32, "interpolation": "bilinear"},
        {"size": 32, "interpolation": "random"},
        {"size": 48, "resize_mode": "longest", "fill_color": 128},
        {"size": 40, "resize_mode": "squash", "interpolation": "bilinear"},
        {"size": (24, 40), "interpolation": "bilinear"},
        {"size": (40, 24), "resize_mode": "longest", "mean": 0.5, "std": 0.25},
    ],
)
def test_other_transforms_equal_open_clip(raw):
    """Every resize mode and filter open_clip offers, including its non-square quirks."""
    from open_clip.transform import PreprocessCfg, image_transform_v2

    reference = image_transform_v2(PreprocessCfg(**raw), is_train=False)
    engine = ImagePreprocessor(preprocess_config(raw))
    images = _images(seed=1)
    batch = engine([image for _, image in images])
    worst = max(
        float(np.abs(reference(image).numpy() - got).max())
        for (_, image), got in zip(images, batch, strict=True)
    )
    assert worst <= 1e-5


def test_pil_bicubic_differs_from_tensor_antialias():
    """Why the engine calls PIL: torchvision's tensor bicubic is not what open_clip runs."""
    import torch
    import torchvision.transforms.functional as TF
    from torchvision.transforms import InterpolationMode

    image = Image.fromarray(np.random.default_rng(2).integers(0, 256, (50, 17, 3), dtype=np.uint8))
    ours = np.asarray(image.resize((32, 94), Image.Resampling.BICUBIC), dtype=np.float32)
    tensor = TF.resize(
        TF.pil_to_tensor(image).to(torch.float32),
        [94, 32],
        InterpolationMode.BICUBIC,
        antialias=True,
    )
    theirs = tensor.round().clamp(0, 255).permute(1, 2, 0).numpy()
    assert np.abs(ours - theirs).max() / 255 > 1e-2


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"resize_mode": "crop"}, "resize_mode"),
        ({"interpolation": "nearest"}, "interpolation"),
        ({"mode": "L"}, "mode"),
        ({"crop": "none"}, "crop"),
        ({"std": [1.0, 0.0, 1.0]}, "std"),
        ({"mean": [0.5, 0.5]}, "mean"),
        ({"size": [0, 32]}, "size"),
        ({"fill_color": "white"}, "fill_color"),
        ({"antialias": False}, "antialias"),
    ],
)
def test_preprocessor_refuses_what_it_cannot_reproduce(tiny, change, field):
    cfg = {**preprocess_config(tiny), **change}
    with pytest.raises(InvalidInputError, match=field):
        ImagePreprocessor(cfg)


def test_preprocessor_refuses_bad_images(tiny):
    engine = ImagePreprocessor(preprocess_config(tiny))
    with pytest.raises(InvalidInputError, match="images\\[1\\]"):
        engine([Image.new("RGB", (4, 4)), np.zeros((4, 4, 3), dtype=np.uint8)])
    with pytest.raises(InvalidInputError, match="empty size"):
        engine([Image.new("RGB", (0, 4))])
    assert engine([]).shape == (0, 3, 32, 32)


def test_engine_modules_import_without_torch(tiny, tmp_path):
    """The serving half runs (tokenise + preprocess) with torch and open_clip never imported."""
    entry = write_tokenizer(tiny, tmp_path / "tokenizer.json")
    cfg = preprocess_config(tiny)
    expected = tiny.tokenizer(["a photo of a dog"]).numpy().tolist()
    code = f"""
import json, sys
import ccsclip.engine.tokenizer, ccsclip.engine.preprocess
from PIL import Image
entry, cfg = json.loads(sys.argv[1]), json.loads(sys.argv[2])
tok = ccsclip.engine.tokenizer.BundleTokenizer({str(tmp_path / "tokenizer.json")!r}, entry)
pix = ccsclip.engine.preprocess.ImagePreprocessor(cfg)([Image.new("RGB", (40, 30))])
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "open_clip", "torchvision"))
print(json.dumps({{"ids": tok(["a photo of a dog"]).tolist(), "shape": list(pix.shape),
                  "bad": bad}}))
"""
    result = subprocess.run(
        [sys.executable, "-c", code, json.dumps(entry), json.dumps(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    report = json.loads(result.stdout)
    assert report["bad"] == []
    assert report["ids"] == expected
    assert report["shape"] == [1, 3, 32, 32]
