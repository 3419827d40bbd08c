"""What one DAgger round did (:class:`DaggerRound`): a row of ``rounds.csv``, typed. JSON (and
CSV) only at the edge: :meth:`DaggerRound.to_json` gives the row in the file's column order,
:meth:`DaggerRound.from_json` reads one back (a row of a run written before a column existed
gets None there)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class DaggerRound:
    """One finished round r: what it collected, how its policy trained and how the policy did in
    the coupled evaluation rollouts (:func:`qbc.interactive.dagger.evaluate_round`). The fields
    are the columns of ``rounds.csv``, in order."""

    round: int
    beta: float
    """the expert's share of the mixture that collected this round's episodes."""
    episodes: int
    """episodes collected this round."""
    steps: int
    """steps (expert labels) collected this round."""
    expert_labels: int
    """expert labels trained on: every round so far, aggregated."""
    dataset: str
    """this round's Minari dataset id."""
    val_loss: float | None
    """the best checkpoint's validation loss (None without validation episodes)."""
    regret: float
    """mean regret against the expert at the evaluation horizon, with its 95% interval."""
    regret_ci_lo: float
    regret_ci_hi: float
    diverged_fraction: float
    """episodes that terminated or diverged by the evaluation horizon."""
    floor_regret: float | None = None
    """the quantized expert's regret (a token policy's floor), else None."""
    floor_diverged_fraction: float | None = None
    expert_return: float | None = None
    """the expert's mean return at the evaluation horizon."""
    success: float | None = None
    """the success rate where the env reports one, with its 95% Wilson interval."""
    success_ci_lo: float | None = None
    success_ci_hi: float | None = None
    policy: str | None = None
    """the round's policy checkpoint, relative to the run folder (round-<r>/best)."""

    def to_json(self) -> dict[str, Any]:
        """The ``rounds.csv`` row: every column, in order (None for an empty field)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, row: Mapping[str, Any]) -> DaggerRound:
        """The round of a ``rounds.csv`` row (numbers already parsed); columns it lacks are
        None, columns this version does not know are left out."""
        return cls(**{f.name: row.get(f.name) for f in fields(cls)})

    def __getitem__(self, key: str) -> Any:
        """A column by name, as ``row["regret"]`` reads the rounds.csv row."""
        if key not in ROUND_FIELDS:
            raise KeyError(key)
        return getattr(self, key)


#: The columns of ``rounds.csv``, in order.
ROUND_FIELDS = [f.name for f in fields(DaggerRound)]
