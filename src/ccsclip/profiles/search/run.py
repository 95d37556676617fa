"""Profile search (docs/design.md §11): the head set with the best accuracy-bias trade-off.

    run_search(loaded, SearchOptions(...)) -> SearchResult (also written as pareto.json)

0. Attribution (only with `attribution=True`, `--attribution`): where the bias lives on the search
   part of the bias probes (`ccsclip.profiles.attribute.reach`); its verdict goes into
   pareto.json and `--candidates attribution:N` takes its top N heads. Off, nothing is attributed.
1. Every probe is split by a hash of its file names (`split.py`); the search sees the search part.
2. One forward pass per probe caches the direct-effect terms (`direct_cache.py`); a greedy or beam
   search (`greedy.py`) adds, step by step, the head that most lowers the bias objective among
   those that keep the accuracy constraint, up to `max_heads`: the best set of each size.
3. Every point of that path is verified by true soft ablation (a full forward pass with the heads
   mean-ablated) on the validation part: estimate and true are reported side by side.
4. The paper's arms at the same sizes (high-CCS, low-CCS, random seeds) are measured on the same
   validation part; all reported figures are validation figures with bootstrap intervals, and
   paired intervals against the baseline (`bootstrap.py`, `baselines.py`).
5. The chosen profile is the point with the lowest objective on the search part (the estimate the
   search ranked by) among those that truly meet the constraint on the validation part, so its
   bias figure is not selected on validation data; it and every path point are written as
   profile YAMLs (arm `search`, `profiles.py`), with pareto.json and pareto.png (`pareto.py`),
   all from one typed `SearchResult` (`result.py`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from ccsclip.errors import InvalidInputError
from ccsclip.fileio import sha256_file
from ccsclip.headref import Head
from ccsclip.heads.stats import load_means
from ccsclip.models import LoadedModel
from ccsclip.probeset import load_probe, read_probe_spec
from ccsclip.profiles.attribute.reach import Reach, reach
from ccsclip.profiles.attribute.run import AttributionOptions
from ccsclip.profiles.probe_checks import check_accuracy_spec, check_bias_spec
from ccsclip.profiles.rank.table import load_table
from ccsclip.profiles.schema import NAME_RE
from ccsclip.profiles.search.baselines import arms_at
from ccsclip.profiles.search.bootstrap import Resampler
from ccsclip.profiles.search.candidates import attribution_request, candidate_heads, parse_heads
from ccsclip.profiles.search.data import (
    ProbeData,
    check_k_fits,
    load_accuracy_data,
    load_bias_data,
    probe_parts,
)
from ccsclip.profiles.search.direct_cache import DirectCache, build_cache
from ccsclip.profiles.search.greedy import Constraint, PathPoint, Scorer, search_path
from ccsclip.profiles.search.measure import Evaluator, with_intervals
from ccsclip.profiles.search.null import null_points
from ccsclip.profiles.search.pareto import pareto_flags, plot_pareto, write_pareto_json
from ccsclip.profiles.search.profiles import write_search_profiles
from ccsclip.profiles.search.result import (
    AblationInfo,
    Bootstrap,
    CheckResult,
    ConstraintInfo,
    Measured,
    Method,
    Objective,
    SearchResult,
)
from ccsclip.profiles.split import Split

NAME_RE_COMPILED = re.compile(NAME_RE)


@dataclass
class SearchOptions:
    """What to search for and on what. `k=None` takes the largest K every bias probe lists."""

    accuracy_probes: Sequence[Path]
    bias_probes: Sequence[Path]
    out: Path
    attribute: str
    k: int | None = None
    means: Path | None = None
    mode: str = "mean"
    ccs_table: Path | None = None
    layers: str | None = None
    candidates: Sequence[str] = ()
    constraint: Constraint = field(default_factory=Constraint)
    beam: int = 1
    verify_top: int = 0
    split: Split = field(default_factory=Split)
    replicates: int = 200
    seed: int = 0
    random_seeds: Sequence[int] = (0, 1, 2)
    check_probes: Sequence[Path] = ()
    name: str = "search"
    batch_size: int = 256
    attribution: bool = False  # the attribution stage: where the bias lives, before searching

    def check(self) -> None:
        """Cheap checks before a model is loaded: options, probe kinds, the attribute."""
        _check_inputs(self)
        for directory in self.accuracy_probes:
            check_accuracy_spec(directory, read_probe_spec(directory))
        for directory in self.bias_probes:
            check_bias_spec(directory, read_probe_spec(directory), self.attribute)
        k = _objective_k(self)
        for directory in self.bias_probes:
            probe = load_probe(directory)
            check_k_fits(probe, probe_parts(probe, self.split), k)


def _check_inputs(options: SearchOptions) -> None:
    if not options.accuracy_probes:
        raise InvalidInputError(
            "give at least one accuracy probe (--probe): it sets the constraint"
        )
    if not options.bias_probes:
        raise InvalidInputError(
            "give at least one bias probe (--bias-probe): it sets the objective"
        )
    if options.mode not in ("mean", "zero"):
        raise InvalidInputError(f"ablation mode {options.mode!r}: use mean or zero")
    if options.mode == "mean" and options.means is None:
        raise InvalidInputError(
            "mean ablation needs --means (means.safetensors written by `ccsclip rank`)"
        )
    if not (NAME_RE_COMPILED.match(options.name) and len(options.name) <= 60):
        raise InvalidInputError(
            f"profile name {options.name!r}: use lower-case letters, digits, '.', '_' or '-'"
        )
    if options.replicates < 20:
        raise InvalidInputError(f"--bootstrap {options.replicates}: use at least 20 resamples")
    if attribution_request(options.candidates) is not None and not options.attribution:
        raise InvalidInputError(
            "--candidates attribution:N ranks heads by the attribution stage: add --attribution"
        )


def _objective_k(options: SearchOptions) -> int:
    """The requested K, or the largest K every bias probe lists."""
    if options.k is not None:
        if options.k < 1:
            raise InvalidInputError(f"--k must be at least 1, got {options.k}")
        return options.k
    common = None
    for directory in options.bias_probes:
        spec = read_probe_spec(directory)
        ks = set(getattr(spec, "k", ()))
        common = ks if common is None else common & ks
    if not common:
        raise InvalidInputError("the bias probes list no common K: choose one with --k")
    return max(common)


def _load_probes(
    loaded: LoadedModel, options: SearchOptions, k: int, split: Split | None, dirs
) -> list[ProbeData]:
    out = []
    for directory in dirs:
        spec = read_probe_spec(directory)
        if spec.kind == "accuracy":
            out.append(load_accuracy_data(loaded, directory, split))
        else:
            out.append(load_bias_data(loaded, directory, split, options.attribute, k))
    return out


def _labels(heads: Sequence[Head]) -> list[str]:
    return [Head(*h).label for h in heads]


def _stage_options(options: SearchOptions) -> list[AttributionOptions]:
    """The attribution stage's options: each bias probe's search part, as the search sees it."""
    return [
        AttributionOptions(
            bias_probe=directory,
            attribute=options.attribute,
            means=options.means if options.mode == "mean" else None,
            part="search",
            split=options.split,
            replicates=options.replicates,
            seed=options.seed,
            batch_size=options.batch_size,
        )
        for directory in options.bias_probes
    ]


class SearchRun:
    """State of one search run; each method is one stage of `run_search`, called in order."""

    def __init__(self, loaded: LoadedModel, options: SearchOptions, progress: bool) -> None:
        _check_inputs(options)
        self.loaded, self.options, self.progress = loaded, options, progress
        self.timing: dict[str, float] = {}
        self.table = None
        if options.ccs_table is not None:
            self.table, _ = load_table(options.ccs_table, loaded.spec.weights_sha256)
        self.means = None
        self.means_sha256: str | None = None
        if options.mode == "mean":
            self.means = load_means(options.means)
            self.means_sha256 = sha256_file(options.means)
        self.k = _objective_k(options)
        self.metric = f"maxskew@{self.k}"
        # what each stage leaves behind, defined (empty) before it runs
        self.reach: Reach | None = None  # the attribution stage's figures, when it ran
        self.candidates: list[Head] = []
        self.probes: list[ProbeData] = []
        self.ks: list[int] = []
        self.caches: list[DirectCache] = []
        self.search_forward_images = 0
        self.candidate_evaluations = 0
        self.base_stats = None  # the baseline's validation points and bootstrap replicates

    def attribute(self) -> None:
        """Stage 0 (optional): where the bias lives on the search part of the bias probes."""
        if not self.options.attribution:
            return
        start = time.perf_counter()
        self.reach = reach(self.loaded, _stage_options(self.options))
        self.timing["attribution_s"] = time.perf_counter() - start

    def choose_candidates(self) -> None:
        o = self.options
        self.candidates = candidate_heads(
            self.loaded.spec, o.candidates, o.layers, self.table, self.reach
        )

    def load(self) -> None:
        o = self.options
        start = time.perf_counter()
        acc = [load_accuracy_data(self.loaded, d, o.split) for d in o.accuracy_probes]
        bias = [load_bias_data(self.loaded, d, o.split, o.attribute, self.k) for d in o.bias_probes]
        self.probes = acc + bias
        ks = set.intersection(*(set(p.ks) for p in bias))
        self.ks = sorted(ks)
        self.timing["load_s"] = time.perf_counter() - start

    def cache(self) -> None:
        start = time.perf_counter()
        model = self.loaded.model.eval()
        self.caches = [
            build_cache(model, p.images, self.candidates, self.means, self.options.batch_size)
            for p in tqdm(self.probes, desc="cache", unit="probe", disable=not self.progress)
        ]
        self.timing["cache_s"] = time.perf_counter() - start

    def search(self, ev: Evaluator) -> list[PathPoint]:
        start = time.perf_counter()
        scorer = Scorer(self.probes, self.caches, self.k)
        o = self.options

        def verify(heads: tuple[Head, ...]) -> tuple[float, float]:
            points = ev.points(ev.true(heads, "search"), "search")
            return points[self.metric], points["accuracy"]

        path = search_path(
            scorer,
            o.constraint,
            o.beam,
            self.progress,
            verify if o.verify_top else None,
            o.verify_top,
        )
        self.search_forward_images = ev.forward_images
        self.candidate_evaluations = scorer.evaluations
        self.timing["search_s"] = time.perf_counter() - start
        return path

    def evaluator(self) -> Evaluator:
        o = self.options
        return Evaluator(
            self.loaded.model,
            self.probes,
            self.ks,
            o.mode,
            self.means,
            Resampler(o.replicates, o.seed),
            self.caches,
            o.batch_size,
        )

    def entry(self, ev: Evaluator, heads, name: str, arm: str, seed=None) -> Measured:
        """Measure one head set on the validation part: true (with intervals) and estimated."""
        true = ev.true(heads, "validation")
        est = ev.estimate(heads)
        val_true = ev.points(true, "validation")
        val_est = ev.points(est, "validation")
        reps = ev.replicates(true, "validation")
        entry = Measured(
            name=name,
            arm=arm,
            seed=seed,
            heads=_labels(heads),
            n_heads=len(heads),
            validation=with_intervals(val_true, reps, self.base_stats),
            null=null_points(self.probes, true, "validation", ev.ks),
            estimate={"validation": val_est},
            gap={m: val_est[m] - val_true[m] for m in val_true},
        )
        base = self.base_stats[0]["accuracy"] if self.base_stats else None
        entry.mark_constraint(self.options.constraint, base)
        if self.base_stats is None:
            self.base_stats = (val_true, reps)
        return entry


def _choose(points: list[Measured], metric: str) -> tuple[Measured | None, str]:
    feasible = [p for p in points if p.meets_constraint["validation"]]
    if not feasible:
        return None, "no searched head set meets the accuracy constraint on the validation part"
    best = min(feasible, key=lambda p: (p.search_value(metric), p.n_heads))
    how = "true ablation" if best.search is not None else "the search's estimate"
    return best, (
        f"lowest {metric} on the search part ({how}) among the "
        f"{len(feasible)} path points that meet the accuracy constraint on the validation part "
        "(true ablation): the bias figure of the choice is not selected on validation data"
    )


def _check(run: SearchRun, chosen: Measured | None) -> CheckResult | None:
    """The chosen set against the baseline on probes of another world (whole probes)."""
    o = run.options
    if not o.check_probes or chosen is None:
        return None
    probes = _load_probes(run.loaded, o, run.k, None, o.check_probes)
    bias = [p for p in probes if p.kind == "bias"]
    ks = sorted(set.intersection(*(set(p.ks) for p in bias))) if bias else run.ks
    ev = Evaluator(
        run.loaded.model, probes, ks, o.mode, run.means, Resampler(o.replicates, o.seed + 1)
    )
    heads = parse_heads(chosen.heads)
    base = ev.true([], "all")
    base_points, base_reps = ev.points(base, "all"), ev.replicates(base, "all")
    mine = ev.true(heads, "all")
    points, reps = ev.points(mine, "all"), ev.replicates(mine, "all")
    return CheckResult(
        probes=[p.identity() for p in probes],
        baseline=with_intervals(base_points, base_reps),
        null=null_points(probes, base, "all", ks),
        chosen=with_intervals(points, reps, (base_points, base_reps)),
    )


def run_search(loaded: LoadedModel, options: SearchOptions, progress: bool = True) -> SearchResult:
    """Search, verify, compare, write profiles + pareto.json + pareto.png into `options.out`."""
    run = SearchRun(loaded, options, progress)
    run.attribute()
    run.choose_candidates()
    run.load()
    run.cache()
    ev = run.evaluator()
    path = run.search(ev)
    start = time.perf_counter()
    baseline = run.entry(ev, (), "baseline", "baseline")
    baseline.estimate["search"] = {run.metric: path[0].objective, "accuracy": path[0].accuracy}
    points = []
    steps = tqdm(path[1:], desc="verify", unit="set", disable=not progress)
    for point in steps:
        name = f"{options.name}-h{len(point.heads)}"
        entry = run.entry(ev, point.heads, name, "search")
        entry.estimate["search"] = {run.metric: point.objective, "accuracy": point.accuracy}
        if point.true_objective is not None:
            entry.search = {run.metric: point.true_objective, "accuracy": point.true_accuracy}
        points.append(entry)
    run.timing["verify_s"] = time.perf_counter() - start
    verify_images = ev.forward_images - run.search_forward_images
    start = time.perf_counter()
    arms = []
    sizes = sorted({p.n_heads for p in points})
    jobs = [
        (n, *arm)
        for n in sizes
        for arm in arms_at(n, run.candidates, run.table, options.random_seeds)
    ]
    for n, arm, seed, heads in tqdm(jobs, desc="arms", unit="set", disable=not progress):
        name = f"{arm}-n{n}" + (f"-s{seed}" if seed is not None else "")
        arms.append(run.entry(ev, heads, name, arm, seed))
    run.timing["arms_s"] = time.perf_counter() - start
    front = [baseline, *points]
    flags = pareto_flags([(e.value("accuracy"), e.value(run.metric)) for e in front])
    for entry, flag in zip(front, flags, strict=True):
        entry.pareto = flag
    chosen, reason = _choose(points, run.metric)
    result = SearchResult(
        model=loaded.spec,
        objective=Objective(run.metric, options.attribute, run.k, run.ks),
        constraint=ConstraintInfo(
            options.constraint.max_accuracy_drop, options.constraint.max_heads
        ),
        method=Method(
            options.beam,
            options.verify_top,
            options.mode,
            _labels(run.candidates),
            run.candidate_evaluations,
        ),
        ablation=AblationInfo(options.mode, options.means, run.means_sha256),
        split=options.split,
        probes=[p.identity() for p in run.probes],
        bootstrap=Bootstrap(options.replicates, options.seed),
        baseline=baseline,
        points=points,
        arms=arms,
        chosen=chosen,
        chosen_reason=reason,
        name=options.name,
        ccs_table=options.ccs_table,
        table=run.table,
    )
    result.check = _check(run, chosen)
    result.attribution = run.reach
    result.timing = {
        **run.timing,
        "search_forward_images": run.search_forward_images,
        "verify_forward_images": verify_images,
        "total_forward_images": ev.forward_images,
    }
    options.out.mkdir(parents=True, exist_ok=True)
    result.profiles = write_search_profiles(loaded, result, options.out / "profiles")
    write_pareto_json(options.out / "pareto.json", result)
    plot_pareto(result, options.out / "pareto.png")
    return result
