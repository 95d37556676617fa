"""The judge interface shared by every CCS judge, and the majority vote that combines judges.

A judge sees one head's top descriptions (TextSpan, usually five), names the concept they share
and says, per description, whether it fits that concept. CCS = the number that fit
(docs/design.md §5).
Judges are structural (`Judge` is a Protocol): any object with these members works, so the
offline judges need not import anything but the data types from here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from ccsclip.errors import CcsclipError


class JudgeError(CcsclipError):
    """A judge could not produce a verdict (misconfigured, unreachable or unusable answers)."""


@dataclass(frozen=True)
class Description:
    """One of a head's top descriptions; `tags` are its concept tags in a tagged pool, else None."""

    text: str
    tags: frozenset[str] | None = None


@dataclass(frozen=True)
class Verdict:
    """A judge's answer for one head: the concept and, per description, whether it fits."""

    concept: str
    consistent: tuple[bool, ...]

    def __post_init__(self) -> None:
        # Coerce lists / numpy bools so verdicts compare, hash and serialise the same everywhere.
        object.__setattr__(self, "consistent", tuple(bool(flag) for flag in self.consistent))

    @property
    def ccs(self) -> int:
        """Concept Consistency Score: how many descriptions fit the concept (0..len)."""
        return sum(self.consistent)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form for ccs.json."""
        return {"concept": self.concept, "consistent": list(self.consistent), "ccs": self.ccs}


class Judge(Protocol):
    """What the CCS scorer needs from a judge.

    Optional extra member, see `ConceptJudge`: ``judge_with_concept(descriptions, concept)``
    answers the per-description question for a concept chosen by someone else. `MajorityJudge`
    uses it to re-ask judges that named a different concept; judges without it vote False there.
    """

    kind: str  # 'tags' | 'embedding' | 'llm' | 'majority'

    def describe(self) -> dict:
        """JSON-able identity for ccs.json (kind, model, prompt version...), never secrets."""
        ...

    def judge(self, descriptions: Sequence[Description]) -> Verdict:
        """Label one head's descriptions and judge each against the label."""
        ...

    def judge_many(self, heads: Sequence[Sequence[Description]]) -> list[Verdict]:
        """Verdicts for several heads, in order; a default for judges that subclass `Judge`."""
        return [self.judge(head) for head in heads]


@runtime_checkable
class ConceptJudge(Judge, Protocol):
    """A judge that can also judge descriptions against a concept it did not choose itself."""

    def judge_with_concept(
        self, descriptions: Sequence[Description], concept: str
    ) -> tuple[bool, ...]:
        """One flag per description: does it belong to `concept`?"""
        ...


def _normalise_concept(concept: str) -> str:
    """Compare labels case- and spacing-insensitively: 'Colour ' and 'colour' are one vote."""
    return " ".join(concept.lower().split())


def _check_verdict(judge: Any, verdict: Verdict, descriptions: Sequence[Description]) -> None:
    if len(verdict.consistent) != len(descriptions):
        raise JudgeError(
            f"judge {getattr(judge, 'kind', type(judge).__name__)!r} returned "
            f"{len(verdict.consistent)} consistency flags for {len(descriptions)} descriptions "
            f"{[d.text for d in descriptions]!r}; it must return one per description"
        )


class MajorityJudge:
    """Several judges combined by vote, so that one judge's quirks do not decide a head's CCS.

    Concept: the most common label (ties: the label of the earliest judge among the tied ones,
    i.e. the first judge's when it is tied). Consistency: a strict majority of all judges, each
    answering *for the agreed concept*; judges that named another concept are asked again with
    `judge_with_concept`, and a judge without that method votes False.
    """

    kind = "majority"

    def __init__(self, judges: Sequence[Judge]) -> None:
        if not judges:
            raise JudgeError("MajorityJudge needs at least one judge; got none")
        self.judges = list(judges)

    def describe(self) -> dict:
        return {"kind": self.kind, "judges": [judge.describe() for judge in self.judges]}

    def _agreed_concept(self, verdicts: Sequence[Verdict]) -> str:
        labels = [_normalise_concept(v.concept) for v in verdicts]
        counts = Counter(labels)
        best = max(counts.values())
        # Iterating in judge order makes ties go to the earliest judge among the tied labels.
        return next(label for label in labels if counts[label] == best)

    def _ask(self, judge: Any, descriptions: Sequence[Description], concept: str) -> list[bool]:
        ask = getattr(judge, "judge_with_concept", None)
        if ask is None:
            return [False] * len(descriptions)
        flags = [bool(flag) for flag in ask(descriptions, concept)]
        if len(flags) != len(descriptions):
            raise JudgeError(
                f"judge {getattr(judge, 'kind', type(judge).__name__)!r} returned {len(flags)} "
                f"flags for {len(descriptions)} descriptions {[d.text for d in descriptions]!r} "
                f"with concept {concept!r}; it must return one per description"
            )
        return flags

    def _combine(self, descriptions: Sequence[Description], verdicts: Sequence[Verdict]) -> Verdict:
        for judge, verdict in zip(self.judges, verdicts, strict=True):
            _check_verdict(judge, verdict, descriptions)
        concept = self._agreed_concept(verdicts)
        votes = [0] * len(descriptions)
        for judge, verdict in zip(self.judges, verdicts, strict=True):
            if _normalise_concept(verdict.concept) == concept:
                flags = list(verdict.consistent)
            else:
                flags = self._ask(judge, descriptions, concept)
            votes = [count + flag for count, flag in zip(votes, flags, strict=True)]
        majority = len(self.judges) / 2
        return Verdict(concept, tuple(count > majority for count in votes))

    def judge(self, descriptions: Sequence[Description]) -> Verdict:
        return self._combine(descriptions, [judge.judge(descriptions) for judge in self.judges])

    def judge_many(self, heads: Sequence[Sequence[Description]]) -> list[Verdict]:
        """Each judge sees all heads at once, so judges that batch or parallelise can do so."""
        per_judge = [judge.judge_many(heads) for judge in self.judges]
        for judge, verdicts in zip(self.judges, per_judge, strict=True):
            if len(verdicts) != len(heads):
                raise JudgeError(
                    f"judge {getattr(judge, 'kind', type(judge).__name__)!r} returned "
                    f"{len(verdicts)} verdicts for {len(heads)} heads"
                )
        return [
            self._combine(head, [verdicts[index] for verdicts in per_judge])
            for index, head in enumerate(heads)
        ]

    def judge_with_concept(
        self, descriptions: Sequence[Description], concept: str
    ) -> tuple[bool, ...]:
        """Majority of the judges' answers for `concept`, so majority judges can be nested."""
        concept = _normalise_concept(concept)
        votes = [0] * len(descriptions)
        for judge in self.judges:
            flags = self._ask(judge, descriptions, concept)
            votes = [count + flag for count, flag in zip(votes, flags, strict=True)]
        return tuple(count > len(self.judges) / 2 for count in votes)
