"""The `tags` judge: exact and offline, for pools whose lines carry concept tags.

Label = the most frequent tag among the descriptions (ties: the tag of the earliest description
that carries one of the tied tags); a description is consistent when the label is among its tags.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from ccsclip.profiles.rank.judges.base import Description, JudgeError, Verdict


class TagsJudge:
    kind = "tags"

    def __init__(self, ignore: Sequence[str] = ()) -> None:
        """`ignore`: tags that never become a label (e.g. a pool's 'other' distractors)."""
        self.ignore = frozenset(ignore)

    def describe(self) -> dict:
        return {"kind": self.kind, "ignore": sorted(self.ignore)}

    def label(self, descriptions: Sequence[Description]) -> str:
        counts: Counter[str] = Counter()
        for description in descriptions:
            if description.tags is None:
                raise JudgeError(
                    f"description {description.text!r} has no tags: the tags judge needs a tagged "
                    "pool; use --judge embedding or --judge llm for untagged pools"
                )
            counts.update(description.tags - self.ignore)
        if not counts:
            return next(iter(sorted(descriptions[0].tags or {"none"})))
        best = max(counts.values())
        tied = {tag for tag, count in counts.items() if count == best}
        for description in descriptions:
            hits = sorted(tied & (description.tags or frozenset()))
            if hits:
                return hits[0]
        return sorted(tied)[0]

    def judge_with_concept(
        self, descriptions: Sequence[Description], concept: str
    ) -> tuple[bool, ...]:
        return tuple(concept in (d.tags or frozenset()) for d in descriptions)

    def judge(self, descriptions: Sequence[Description]) -> Verdict:
        concept = self.label(descriptions)
        return Verdict(concept, self.judge_with_concept(descriptions, concept))

    def judge_many(self, heads: Sequence[Sequence[Description]]) -> list[Verdict]:
        return [self.judge(head) for head in heads]
