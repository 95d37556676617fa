"""`ccsclip probe import`: probes from each source format, sealed, and used by rank/evaluate/search.

Small data in each format is made here from the small organism world's images (a class-folder
tree, a webdataset shard, a torchvision ImageFolder layout, a `datasets` dataset saved to disk,
a FairFace-layout CSV and Parquet table); every imported probe then goes through `rank`,
`evaluate` and `search` with the organism model. Bad inputs exit 2 with a message and leave
nothing at --out.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shlex
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml
from PIL import Image
from typer.main import get_command
from typer.testing import CliRunner

from ccsclip.cli import app
from ccsclip.probeset import AccuracyProbeSpec, BiasProbeSpec, load_probe

CIFAR10 = (
    "airplane automobile bird cat deer dog frog horse ship truck"  # torchvision's folder names
).split()
MODEL = ["-m", "ccsclip-organism", "--pretrained", "embedded"]


def _import(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["probe", "import", *args])
    return result.exit_code, result.output


def _imported(*args: str) -> Path:
    code, output = _import(*args)
    assert code == 0, output
    out = Path(args[args.index("--out") + 1])
    assert "sealed" in output
    load_probe(out)  # the content hash and every file check out
    return out


def _class_tree(world: Path, concept: str, target: Path) -> Path:
    """A plain ImageFolder tree: the world's probe without its probe.yaml."""
    shutil.copytree(world / f"accuracy-{concept}", target, ignore=shutil.ignore_patterns("*.yaml"))
    return target


def _world_classes(world: Path, concept: str) -> list[tuple[str, list[Path]]]:
    spec = yaml.safe_load((world / f"accuracy-{concept}" / "probe.yaml").read_text())
    root = world / f"accuracy-{concept}"
    return [(c["name"], sorted((root / c["folder"]).glob("*.png"))) for c in spec["classes"]]


def _wds_dataset(world: Path, root: Path) -> Path:
    """clip-benchmark's webdataset layout: test/nshards.txt, test/0.tar, classnames, templates."""
    classes = _world_classes(world, "colour")
    (root / "test").mkdir(parents=True)
    (root / "test" / "nshards.txt").write_text("1\n")
    (root / "classnames.txt").write_text("".join(f"{name}\n" for name, _ in classes))
    (root / "zeroshot_classification_templates.txt").write_text("a {c} shape\na photo of {c}\n")
    with tarfile.open(root / "test" / "0.tar", "w") as shard:
        for label, (_, files) in enumerate(classes):
            for i, path in enumerate(files):
                key = f"s{label:02d}{i:04d}"
                for suffix, data in ((".png", path.read_bytes()), (".cls", str(label).encode())):
                    info = tarfile.TarInfo(key + suffix)
                    info.size = len(data)
                    shard.addfile(info, io.BytesIO(data))
    return root


def _food101(world: Path, root: Path) -> Path:
    """torchvision's Food-101 layout: food-101/meta/test.json and food-101/images/<class>/*.jpg."""
    meta = {}
    for _, files in _world_classes(world, "position"):
        folder = files[0].parent.name  # top_left: clip-benchmark names the class "top left"
        (root / "food-101" / "images" / folder).mkdir(parents=True)
        meta[folder] = []
        for path in files:
            Image.open(path).convert("RGB").save(
                root / "food-101/images" / folder / f"{path.stem}.jpg"
            )
            meta[folder].append(f"{folder}/{path.stem}")
    (root / "food-101" / "meta").mkdir()
    (root / "food-101" / "meta" / "test.json").write_text(json.dumps(meta))
    return root


def _fairface_rows(world: Path) -> list[dict[str, str]]:
    """FairFace's label layout (file,age,gender,race,service_test) over the world's bias pool."""
    rows = []
    with open(world / "bias-shape-colour" / "metadata.csv", newline="") as handle:
        for i, row in enumerate(csv.DictReader(handle)):
            rows.append(
                {
                    "file": f"val/{row['file']}",
                    "age": ("20-29", "30-39", "40-49")[i % 3],
                    "gender": ("Male", "Female")[i % 2],
                    "race": row["colour"],
                    "service_test": str(i % 4 != 0),
                }
            )
    return rows


def _fairface(world: Path, root: Path) -> Path:
    shutil.copytree(world / "bias-shape-colour" / "images", root / "val")
    rows = _fairface_rows(world)
    with open(root / "fairface_label_val.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root / "fairface_label_val.csv"


def _hf_dataset(world: Path, target: Path) -> Path:
    datasets = pytest.importorskip("datasets")
    classes = _world_classes(world, "size")
    images, labels, shapes = [], [], []
    for label, (_, files) in enumerate(classes):
        for path in files:
            images.append(path.read_bytes())
            labels.append(label)
            shapes.append(path.parent.name)
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "label": datasets.ClassLabel(names=[name for name, _ in classes]),
            "folder": datasets.Value("string"),
        }
    )
    data = {"image": [{"bytes": b, "path": None} for b in images], "label": labels}
    ds = datasets.Dataset.from_dict({**data, "folder": shapes}, features=features)
    datasets.DatasetDict({"test": ds}).save_to_disk(str(target))
    return target


@pytest.fixture(scope="module")
def imported(small_world, tmp_path_factory) -> dict[str, Path]:
    """One probe per source format, imported through the CLI."""
    src = tmp_path_factory.mktemp("sources")
    out = tmp_path_factory.mktemp("probes")
    probes = {}
    probes["folder"] = _imported(
        "folder", str(_class_tree(small_world, "shape", src / "shapes")), "--out", str(out / "f")
    )
    cifar = src / "cifar10"
    for name, (_, files) in zip(CIFAR10, _world_classes(small_world, "colour") * 2, strict=False):
        (cifar / name).mkdir(parents=True)
        for path in files[:2]:
            shutil.copy(path, cifar / name / path.name)
    probes["cifar10"] = _imported(
        "folder", str(cifar), "--dataset", "cifar10", "--out", str(out / "cifar10")
    )
    wds = _wds_dataset(small_world, src / "wds")
    probes["wds"] = _imported(
        "benchmark", "wds/colour", "--root", str(wds), "--out", str(out / "wds")
    )
    fer = _class_tree(small_world, "position", src / "fer" / "test")
    for extra in ("neutral", "sad", "surprised"):  # fer2013 has 7 classes; the world 4 positions
        shutil.copytree(fer / "top_left", fer / extra)
    probes["torchvision"] = _imported(
        "benchmark", "fer2013", "--root", str(src / "fer"), "--out", str(out / "fer")
    )
    food = _food101(small_world, src / "food101")
    probes["food101"] = _imported(
        "benchmark", "food101", "--root", str(food), "--out", str(out / "food101")
    )
    probes["hf"] = _imported(
        "hf",
        str(_hf_dataset(small_world, src / "hf")),
        "--label-column",
        "label",
        "--out",
        str(out / "hf"),
    )
    table = _fairface(small_world, src / "fairface")
    common = ["--attribute", "race", "--attribute", "gender", "--queries", "occupations"]
    probes["fairface"] = _imported(
        "table", str(table), *common, "--where", "service_test=True", "--out", str(out / "ff")
    )
    return probes


def test_class_folder_tree_keeps_names_and_files(imported, small_world):
    probe = load_probe(imported["folder"])
    assert isinstance(probe.spec, AccuracyProbeSpec)
    assert [c.folder for c in probe.spec.classes] == sorted(c.folder for c in probe.spec.classes)
    assert {c.name for c in probe.spec.classes} == {
        n for n, _ in _world_classes(small_world, "shape")
    }
    assert probe.spec.templates == ["a photo of a {}."]
    assert len(probe.samples) == sum(len(f) for _, f in _world_classes(small_world, "shape"))
    one = probe.samples[0][0]
    assert (
        one.read_bytes()
        == (small_world / "accuracy-shape" / one.parent.name / one.name).read_bytes()
    )


def test_named_dataset_brings_clip_benchmarks_templates(imported):
    spec = load_probe(imported["cifar10"]).spec
    assert [c.name for c in spec.classes] == sorted(CIFAR10)
    assert len(spec.templates) == 18 and "a blurry photo of a {}." in spec.templates


def test_builders_read_webdataset_shards_and_torchvision_layouts(imported, small_world):
    wds = load_probe(imported["wds"])
    colours = [n for n, _ in _world_classes(small_world, "colour")]
    assert [c.name for c in wds.spec.classes] == colours
    assert wds.spec.templates == ["a {} shape", "a photo of {}"]  # {c} became {}
    per_class = [sum(1 for _, i in wds.samples if i == k) for k in range(len(colours))]
    assert per_class == [len(f) for _, f in _world_classes(small_world, "colour")]
    fer = load_probe(imported["torchvision"]).spec
    assert [c.name for c in fer.classes][:3] == ["angry", "disgusted", "fearful"]  # by index
    food = load_probe(imported["food101"])
    assert [c.name for c in food.spec.classes] == sorted(
        n for n, _ in _world_classes(small_world, "position")
    )  # torchvision's sorted folders, with clip-benchmark's "_" -> " "
    assert "a photo of {}, a type of food." in food.spec.templates
    assert len(food.samples) == sum(len(f) for _, f in _world_classes(small_world, "position"))


def test_named_dataset_with_a_class_list_maps_sorted_folders(small_world, tmp_path):
    tree = _class_tree(small_world, "position", tmp_path / "tree")
    _refused(tmp_path, "folder", str(tree), "--dataset", "fer2013", message="has 7 classes")
    for extra in ("neutral", "sad", "surprised"):
        shutil.copytree(tree / "top_left", tree / extra)
    spec = load_probe(
        _imported("folder", str(tree), "--dataset", "fer2013", "--out", str(tmp_path / "p"))
    ).spec
    assert [(c.folder, c.name) for c in spec.classes][:2] == [
        ("bottom_left", "angry"),
        ("bottom_right", "disgusted"),
    ]


def test_saved_datasets_keep_class_label_names(imported, small_world):
    probe = load_probe(imported["hf"])
    assert [c.name for c in probe.spec.classes] == [
        n for n, _ in _world_classes(small_world, "size")
    ]
    assert len(probe.samples) == sum(len(f) for _, f in _world_classes(small_world, "size"))


def test_fairface_table_is_a_bias_probe_with_the_named_queries(imported, small_world):
    probe = load_probe(imported["fairface"])
    assert isinstance(probe.spec, BiasProbeSpec)
    assert probe.spec.attributes == ["race", "gender"]
    assert any(q.text == "doctor" for q in probe.spec.queries)
    assert probe.spec.templates == ["a photo of a {}."]
    kept = [r for r in _fairface_rows(small_world) if r["service_test"] == "True"]
    assert len(probe.rows) == len(kept) and probe.spec.k == [10]
    assert {r["race"] for _, r in probe.rows} == {r["race"] for r in kept}


def test_parquet_table_and_hf_attributes_make_the_same_kind_of_probe(small_world, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    table = _fairface(small_world, tmp_path / "ff")
    rows = _fairface_rows(small_world)
    parquet = table.with_suffix(".parquet")
    pq.write_table(pa.Table.from_pylist(rows), parquet)
    args = ["--attribute", "race", "--queries", "traits", "--queries", "occupations"]
    probe = load_probe(_imported("table", str(parquet), *args, "--out", str(tmp_path / "p")))
    assert len(probe.rows) == len(rows)
    assert probe.spec.templates == ["{}"]  # two sets, two templates: written into the texts
    assert {"a photo of a kind person.", "a photo of a doctor."} <= {
        q.text for q in probe.spec.queries
    }
    hf = _hf_dataset(small_world, tmp_path / "hf")
    bias = load_probe(
        _imported(
            "hf",
            str(hf),
            "--attribute",
            "folder",
            "--queries",
            "traits",
            "--out",
            str(tmp_path / "h"),
        )
    )
    assert {r["folder"] for _, r in bias.rows} == {"small", "large"}


def test_imported_probes_are_accepted_by_rank_evaluate_and_search(imported, small_world, tmp_path):
    accuracy = [imported[k] for k in ("folder", "cifar10", "wds", "torchvision", "food101", "hf")]
    probe_args = [a for p in [*accuracy, imported["fairface"]] for a in ("--probe", str(p))]
    rank = CliRunner().invoke(
        app,
        [
            "rank",
            *MODEL,
            "--images",
            str(small_world / "calibration"),
            "--pool",
            str(small_world / "pool.txt"),
            "--layers",
            "last:1",
            "--null-samples",
            "0",
            "--arm",
            "baseline",
            "--out",
            str(tmp_path / "rank"),
            *probe_args,
        ],
    )
    assert rank.exit_code == 0, rank.output
    evaluation = json.loads((tmp_path / "rank" / "evaluation.json").read_text())
    assert evaluation["arms"]["baseline"]
    profile = tmp_path / "rank" / "profiles" / "baseline.yaml"
    evaluate = CliRunner().invoke(
        app,
        ["evaluate", *MODEL, "--profile", str(profile), *probe_args, "--out", str(tmp_path / "e")],
    )
    assert evaluate.exit_code == 0, evaluate.output
    text = (tmp_path / "e" / "evaluation.json").read_text()
    for probe in [*accuracy, imported["fairface"]]:
        assert load_probe(probe).name in text
    search = CliRunner().invoke(
        app,
        [
            "search",
            *MODEL,
            *[a for p in accuracy[:3] for a in ("--probe", str(p))],
            "--bias-probe",
            str(imported["fairface"]),
            "--attribute",
            "race",
            "--means",
            str(tmp_path / "rank" / "stats" / "means.safetensors"),
            "--candidates",
            "L5H0,L5H1",
            "--max-heads",
            "1",
            "--bootstrap",
            "20",
            "--random-seed",
            "0",
            "--out",
            str(tmp_path / "s"),
        ],
    )
    assert search.exit_code == 0, search.output
    assert json.loads((tmp_path / "s" / "pareto.json").read_text())["points"]


# --------------------------------------------------------------------------- bad input


def _refused(tmp_path: Path, *args: str, message: str) -> None:
    out = tmp_path / "refused"
    code, output = _import(*args, "--out", str(out))
    assert code == 2, output
    assert message in output, output
    assert "Traceback" not in output
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".refused")]  # no temp left


def test_missing_column_is_refused(small_world, tmp_path):
    table = _fairface(small_world, tmp_path / "ff")
    _refused(
        tmp_path,
        "table",
        str(table),
        "--attribute",
        "ethnicity",
        "--queries",
        "occupations",
        message="no column(s) ['ethnicity']",
    )


def test_unreadable_image_is_refused(small_world, tmp_path):
    tree = _class_tree(small_world, "size", tmp_path / "tree")
    bad = sorted((tree / "large").iterdir())[-1]
    bad.write_bytes(bad.read_bytes()[:40])  # a truncated PNG
    _refused(tmp_path, "folder", str(tree), message=f"cannot read image {bad}")


def test_unreadable_shard_entry_and_missing_table_image_are_refused(small_world, tmp_path):
    wds = _wds_dataset(small_world, tmp_path / "wds")
    with tarfile.open(wds / "test" / "0.tar", "a") as shard:
        for suffix, data in ((".png", b"\x89PNG\r\n\x1a\nnot really"), (".cls", b"0")):
            info = tarfile.TarInfo("zz-broken" + suffix)
            info.size = len(data)
            shard.addfile(info, io.BytesIO(data))
    _refused(tmp_path, "benchmark", "wds/colour", "--root", str(wds), message="cannot read image")
    table = _fairface(small_world, tmp_path / "ff")
    (tmp_path / "ff" / "val" / "b00007.png").unlink()
    _refused(
        tmp_path,
        "table",
        str(table),
        "--attribute",
        "race",
        "--queries",
        "occupations",
        message="val/b00007.png' does not exist",
    )


def test_unknown_dataset_name_is_refused(small_world, tmp_path):
    tree = _class_tree(small_world, "size", tmp_path / "tree")
    _refused(tmp_path, "folder", str(tree), "--dataset", "cifar11", message="unknown dataset name")
    _refused(tmp_path, "benchmark", "cifar11", "--root", str(tree), message="unknown dataset name")


def test_empty_class_is_refused(small_world, tmp_path):
    tree = _class_tree(small_world, "size", tmp_path / "tree")
    for path in (tree / "small").iterdir():
        path.unlink()
    _refused(tmp_path, "folder", str(tree), message="classes without images: ['small']")


def test_label_outside_the_class_list_is_refused(small_world, tmp_path):
    hf = _hf_dataset(small_world, tmp_path / "hf")
    classes = tmp_path / "one.txt"
    classes.write_text("small\nmedium\n")
    _refused(
        tmp_path,
        "hf",
        str(hf),
        "--label-column",
        "folder",
        "--classes",
        str(classes),
        message="labels ['large'] of column 'folder' are not in the class list",
    )
    wds = _wds_dataset(small_world, tmp_path / "wds")
    (wds / "classnames.txt").write_text("red\ngreen\n")  # the shard's labels go up to 5
    _refused(
        tmp_path, "benchmark", "wds/colour", "--root", str(wds), message="outside the class list"
    )


def test_missing_dataset_root_is_refused_without_download(tmp_path):
    _refused(
        tmp_path,
        "benchmark",
        "cifar10",
        "--root",
        str(tmp_path / "nothing"),
        message="ccsclip never downloads",
    )
    (tmp_path / "empty").mkdir()
    _refused(
        tmp_path, "benchmark", "cifar10", "--root", str(tmp_path / "empty"), message="found no"
    )


def test_existing_output_is_not_replaced_without_overwrite(small_world, tmp_path):
    tree = _class_tree(small_world, "size", tmp_path / "tree")
    out = tmp_path / "probe"
    out.mkdir()
    code, output = _import("folder", str(tree), "--out", str(out))
    assert code == 2 and "--overwrite" in output
    assert list(out.iterdir()) == []
    _imported("folder", str(tree), "--out", str(out), "--overwrite")


# --------------------------------------------------------------------------- the paper's page


def _code_blocks(page: Path) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", page.read_text(), flags=re.S)


def _ccsclip_calls(block: str) -> list[list[str]]:
    """Each `ccsclip ...` (or `-m ccsclip.cli ...`) command of a bash block, as its words."""
    calls = []
    for line in block.replace("\\\n", " ").splitlines():
        words = shlex.split(line.split(" #", 1)[0].strip().rstrip(";"))
        for start, word in enumerate(words):
            if word in ("ccsclip", "ccsclip.cli"):
                calls.append(words[start + 1 :])
                break
    return calls


def test_reproduce_paper_page_uses_existing_commands_and_flags():
    """docs/reproduce-paper.md cannot run here (no weights), so check what can be: valid bash,
    every sub-command exists, every flag is one of that command's options."""
    root = get_command(app)
    blocks = _code_blocks(Path(__file__).parents[1] / "docs" / "reproduce-paper.md")
    calls = [c for b in blocks for c in _ccsclip_calls(b)]
    assert len(calls) >= 12  # the probes, rank, stats, profiles, evaluate, search
    for block in blocks:
        checked = subprocess.run(["bash", "-n"], input=block, capture_output=True, text=True)
        assert checked.returncode == 0, (block, checked.stderr)
    seen = set()
    for words in calls:
        command, path = root, []
        while hasattr(command, "commands") and words and words[0] in command.commands:
            path.append(words[0])
            command = command.commands[words.pop(0)]
        assert not hasattr(command, "commands"), f"ccsclip {' '.join(path)}: not a command"
        options = {o for p in command.params for o in p.opts}
        flags = [w.split("=", 1)[0] for w in words if w.startswith("-")]
        unknown = [f for f in flags if f not in options]
        assert not unknown, f"ccsclip {' '.join(path)}: no option(s) {unknown}"
        seen.add(" ".join(path))
    assert {"probe import benchmark", "probe import table", "rank", "search"} <= seen
