"""The Galaxy Zoo 2 decision tree as data: 37 Kaggle columns, 11 questions, their dependencies.

Everything that needs to know the tree (heads, losses, metrics, plots, the synthetic generator and
the label checks) reads it from here. Slices are 0-based, end-exclusive column ranges of the 37
outputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ID_COLUMN = "GalaxyID"


@dataclass(frozen=True)
class Question:
    """One question of the tree: its answers, its columns and the answer that leads to it."""

    number: int
    text: str
    answers: tuple[str, ...]
    start: int
    parent: tuple[int, int] | None
    """(question, answer), 1-based, whose value this question's answers sum to; None: to 1."""
    asked_after: tuple[tuple[int, int], ...]
    """Where a volunteer comes from to this question in the GZ2 interface: (question, answer),
    1-based, with answer 0 for "any answer". Empty: the first question."""

    @property
    def stop(self) -> int:
        return self.start + len(self.answers)

    @property
    def slice(self) -> slice:
        return slice(self.start, self.stop)

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(f"Class{self.number}.{a}" for a in range(1, len(self.answers) + 1))

    @property
    def parent_column(self) -> int | None:
        """Index (0..36) of the column this question's answers sum to, or None for 1."""
        if self.parent is None:
            return None
        q, a = self.parent
        return QUESTIONS[q - 1].start + a - 1

    @property
    def parent_name(self) -> str:
        return "1" if self.parent is None else f"Class{self.parent[0]}.{self.parent[1]}"


def _build() -> tuple[Question, ...]:
    Step = tuple[int, int]
    spec: list[tuple[str, tuple[str, ...], Step | None, tuple[Step, ...]]] = [
        (
            "smooth, features/disk, or star?",
            ("smooth", "features or disk", "star or artifact"),
            None,
            (),
        ),
        ("disk edge-on?", ("yes", "no"), (1, 2), ((1, 2),)),
        ("bar through centre?", ("yes", "no"), (2, 2), ((2, 2),)),
        ("spiral arm pattern?", ("yes", "no"), (2, 2), ((3, 0),)),
        (
            "bulge prominence",
            ("none", "just noticeable", "obvious", "dominant"),
            (2, 2),
            ((4, 2), (11, 0)),
        ),
        # Asked of everyone who did not answer "star"; Kaggle renormalised it to sum to 1.
        ("anything odd?", ("yes", "no"), None, ((7, 0), (5, 0), (9, 0))),
        ("how rounded?", ("completely round", "in between", "cigar-shaped"), (1, 1), ((1, 1),)),
        (
            "odd feature",
            ("ring", "lens or arc", "disturbed", "irregular", "other", "merger", "dust lane"),
            (6, 1),
            ((6, 1),),
        ),
        ("edge-on bulge shape", ("rounded", "boxy", "none"), (2, 1), ((2, 1),)),
        ("arm winding", ("tight", "medium", "loose"), (4, 1), ((4, 1),)),
        (
            "number of arms",
            ("1", "2", "3", "4", "more than four", "can't tell"),
            (4, 1),
            ((10, 0),),
        ),
    ]
    questions = []
    start = 0
    for number, (text, answers, parent, asked_after) in enumerate(spec, start=1):
        questions.append(Question(number, text, answers, start, parent, asked_after))
        start += len(answers)
    return tuple(questions)


QUESTIONS: tuple[Question, ...] = _build()
COLUMNS: tuple[str, ...] = tuple(c for q in QUESTIONS for c in q.columns)
N_OUTPUTS = len(COLUMNS)
CSV_HEADER: tuple[str, ...] = (ID_COLUMN, *COLUMNS)


def _walk_order() -> tuple[int, ...]:
    """Question numbers with every question after those it depends on (its parent and where
    volunteers come from): the order in which tree outputs are scaled and volunteers walk."""
    order: list[int] = []
    while len(order) < len(QUESTIONS):
        for q in QUESTIONS:
            before = {s[0] for s in q.asked_after} | ({q.parent[0]} if q.parent else set())
            if q.number not in order and before <= set(order):
                order.append(q.number)
                break
    return tuple(order)


TREE_ORDER: tuple[int, ...] = _walk_order()


def question(number: int) -> Question:
    """The question with 1-based ``number``."""
    return QUESTIONS[number - 1]


def expected_sums(values: np.ndarray) -> np.ndarray:
    """For each row and question, the value its answers must sum to: shape (N, 11).

    ``values`` is (N, 37) or (37,). Missing parents (NaN) give NaN.
    """
    v = np.atleast_2d(np.asarray(values, dtype=np.float64))
    out = np.ones((v.shape[0], len(QUESTIONS)))
    for i, q in enumerate(QUESTIONS):
        if q.parent_column is not None:
            out[:, i] = v[:, q.parent_column]
    return out


def answer_sums(values: np.ndarray) -> np.ndarray:
    """Per row and question, the sum of its answers (NaN when any answer is missing): (N, 11)."""
    v = np.atleast_2d(np.asarray(values, dtype=np.float64))
    return np.stack([v[:, q.slice].sum(axis=1) for q in QUESTIONS], axis=1)


def reached(values: np.ndarray, threshold: float = 0.0) -> np.ndarray:
    """Boolean (N, 11): whether volunteers reached each question, i.e. the value of the answer
    leading to it is > ``threshold`` (a missing value counts as not reached). The one definition
    used by the metrics, the figures and the checks."""
    with np.errstate(invalid="ignore"):
        return np.nan_to_num(expected_sums(values), nan=0.0) > threshold


MEANINGFUL = 0.5
"""The share of volunteers who must reach a question for its top answer to mean something."""


def meaningful(values: np.ndarray) -> np.ndarray:
    """Boolean (N, 11): whether most volunteers reached each question, i.e. the value of the
    answer leading to it (the share of all volunteers who got there) is at least
    :data:`MEANINGFUL` (a missing value counts as not reached). Q1 and Q6, asked of everyone,
    always are. Top-answer accuracy is counted over these galaxies: where only a few
    volunteers reached a question, its top answer is a handful of votes, not the crowd's view."""
    with np.errstate(invalid="ignore"):
        return np.nan_to_num(expected_sums(values), nan=0.0) >= MEANINGFUL


def volunteer_reach(answers: list[np.ndarray]) -> list[np.ndarray]:
    """Which volunteers reach each question, walking the GZ2 interface (``asked_after``).

    ``answers[i]`` holds each volunteer's 0-based answer to question i + 1 (as if asked); returns,
    per question, a boolean mask over the volunteers.
    """
    n = len(answers[0])
    reach: dict[int, np.ndarray] = {}
    for number in TREE_ORDER:
        q = question(number)
        mask = np.zeros(n, dtype=bool) if q.asked_after else np.ones(n, dtype=bool)
        for prev, answer in q.asked_after:
            came = reach[prev] if answer == 0 else reach[prev] & (answers[prev - 1] == answer - 1)
            mask |= came
        reach[number] = mask
    return [reach[q.number] for q in QUESTIONS]


@dataclass(frozen=True)
class ConsistencyReport:
    """Result of :func:`check_consistency`."""

    n_rows: int
    n_checked: int
    """(row, question) pairs whose answers and parent were all present."""
    n_violations: int
    worst_residual: float
    """Largest |sum(answers) - expected|; 0.0 when nothing was checked."""
    worst_row: int | None
    worst_question: int | None
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.n_violations == 0

    def describe(self, ids: np.ndarray | None = None) -> str:
        if self.worst_row is None or self.worst_question is None:
            return f"nothing to check in {self.n_rows} rows (all cells missing)"
        q = question(self.worst_question)
        row = f"GalaxyID {ids[self.worst_row]}" if ids is not None else f"row {self.worst_row}"
        status = "consistent" if self.ok else f"{self.n_violations} violations"
        return (
            f"{status} over {self.n_checked} question sums (tolerance {self.tolerance:g}); "
            f"worst: {row}, Q{q.number} answers sum off from {q.parent_name} "
            f"by {self.worst_residual:.3g}"
        )


def check_consistency(values: np.ndarray, tolerance: float = 1e-5) -> ConsistencyReport:
    """Check that every question's answers sum to the value of the answer leading to it.

    Questions with a missing answer or parent (NaN) are skipped. The default tolerance allows for
    the rounding of the Kaggle CSV: real rows are consistent to 2e-6 (measured on 16,919 rows).
    """
    v = np.atleast_2d(np.asarray(values, dtype=np.float64))
    residual = np.abs(answer_sums(v) - expected_sums(v))
    checked = np.isfinite(residual)
    n_checked = int(checked.sum())
    if n_checked == 0:
        return ConsistencyReport(v.shape[0], 0, 0, 0.0, None, None, tolerance)
    filled = np.where(checked, residual, -1.0)
    row, qi = np.unravel_index(int(np.argmax(filled)), filled.shape)
    return ConsistencyReport(
        n_rows=v.shape[0],
        n_checked=n_checked,
        n_violations=int((filled > tolerance).sum()),
        worst_residual=float(filled[row, qi]),
        worst_row=int(row),
        worst_question=int(qi) + 1,
        tolerance=tolerance,
    )


# ---------------------------------------------------------------------------------------------
# Which questions a run learned
# ---------------------------------------------------------------------------------------------

ALL_QUESTIONS: tuple[int, ...] = tuple(q.number for q in QUESTIONS)


@dataclass(frozen=True)
class Learned:
    """The questions a run learned: those with at least one label in its training data.

    The model still outputs all 37 answers (the tree needs every question), but those of a
    question it never had a label for are its prior (the tree's even split), not a measurement.
    Science outputs leave them empty and name them; a Kaggle submission keeps the prior, which
    must hold 37 numbers. Recorded in every checkpoint (``trained_questions`` in the model
    configuration); a checkpoint that predates it (0.1, 0.2) counts as having learned all 11.
    """

    questions: tuple[int, ...] = ALL_QUESTIONS
    """1-based question numbers, ascending."""

    @classmethod
    def from_labels(cls, labels: np.ndarray) -> Learned:
        """The questions with any labelled cell in ``labels`` (N, 37; NaN = missing)."""
        v = np.atleast_2d(np.asarray(labels, dtype=np.float64))
        has = ~np.isnan(v)
        return cls(tuple(q.number for q in QUESTIONS if has[:, q.slice].any()))

    @classmethod
    def from_value(cls, value: object) -> Learned:
        """From a checkpoint's list of question numbers; None (an older checkpoint): all."""
        if value is None:
            return cls()
        numbers = sorted({int(n) for n in value})  # type: ignore[attr-defined]
        if any(not 1 <= n <= len(QUESTIONS) for n in numbers):
            raise ValueError(f"trained_questions {numbers}: question numbers are 1..11")
        return cls(tuple(numbers))

    def __and__(self, other: Learned) -> Learned:
        """The questions both learned (what an ensemble of the two answers for)."""
        return Learned(tuple(n for n in self.questions if n in other.questions))

    @property
    def untrained(self) -> tuple[int, ...]:
        return tuple(n for n in ALL_QUESTIONS if n not in self.questions)

    @property
    def complete(self) -> bool:
        return not self.untrained

    @property
    def mask(self) -> np.ndarray:
        """Boolean (37,): the columns of the learned questions."""
        out = np.zeros(N_OUTPUTS, dtype=bool)
        for n in self.questions:
            out[question(n).slice] = True
        return out

    @property
    def untrained_columns(self) -> tuple[str, ...]:
        return tuple(c for n in self.untrained for c in question(n).columns)

    def describe_untrained(self) -> str:
        """E.g. "Q3, Q4 (Class3.1-Class4.2)": the questions never learned and their columns."""
        parts = []
        for n in self.untrained:
            cols = question(n).columns
            parts.append(f"Q{n} ({cols[0]}-{cols[-1]})")
        return ", ".join(parts)

    def as_dict(self) -> dict[str, list[int] | list[str]]:
        return {
            "trained_questions": list(self.questions),
            "untrained_questions": list(self.untrained),
            "untrained_columns": list(self.untrained_columns),
        }
