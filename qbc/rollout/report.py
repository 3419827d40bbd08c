"""What an evaluation found (:class:`RolloutReport`, returned by
:func:`qbc.rollout.evaluate.evaluate`) and the files it is kept in (:func:`write_report`).

The report holds what ``metrics.json`` holds, key for key: per policy and horizon the metrics
of :func:`qbc.rollout.metrics.horizon_metrics`, the coupling check, the expert, the growth fits,
the floors and the learner-vs-floor verdict. JSON happens only here, at the edge:
:meth:`RolloutReport.to_json` gives the ``metrics.json`` object and
:meth:`RolloutReport.from_json` reads one back.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from qbc.chunking.floor import FLOOR_NAMES
from qbc.infra.files import atomic_write_csv, atomic_write_json, json_safe
from qbc.rollout.coupled import RolloutResult
from qbc.rollout.growth import floor_verdict
from qbc.rollout.metrics import per_step_table
from qbc.rollout.plots import plot_regret_vs_horizon, plot_state_deviation
from qbc.tokenizer import clipped_message

#: Per policy (and horizon H as a string): the metrics of one policy at one horizon.
PerHorizon = dict[str, dict[str, Any]]


@dataclass
class RolloutReport:
    """The outcome of one coupled evaluation, field for field the keys of ``metrics.json`` (in
    their order), plus the trajectories and the resolved settings (not in ``metrics.json``)."""

    horizons: list[int]
    """the horizons H evaluated, ascending (capped at a third-party env's time limit)."""
    reference: str
    """the actor regret is measured against ('expert')."""
    policies: dict[str, PerHorizon]
    """per actor and H (string): return, regret (95% CI), state deviation, divergence, ..."""
    env_id: str
    coupling: dict[str, Any]
    """:func:`qbc.rollout.coupled.check_coupling`: whether the rollouts are exactly coupled."""
    expert: dict[str, Any]
    """the expert: ``{"name", "params", "source"}``."""
    horizons_capped: str | None
    """the warning given when horizons were capped at the env's time limit, else None."""
    growth: dict[str, Any]
    """per actor but the expert: :func:`qbc.rollout.growth.fit_growth` of regret against H."""
    timing: dict[str, float]
    """``{"seconds", "actions_per_second"}`` of the coupled rollout."""
    clipped_actions: dict[str, dict[str, int]]
    """per quantized expert: expert action values clipped to the tokenizer's range."""
    floors: dict[str, dict[str, Any]]
    """per quantized expert: its rounding and whether it is the floor of the policy's decoding."""
    execution: dict[str, Any]
    """per chunk policy: its execution mode, chunks predicted and decode failures."""
    verdict: dict[str, Any] | None
    """:func:`learner_verdict`: the learner against its floor at the largest H."""
    chunk_floor: dict[str, Any] | None
    """:func:`floor_ratios`: a chunk learner's regret beside its chunk floor's."""
    videos: list[str] | None = None
    """video files, relative to the output folder (only when videos were written)."""
    config: dict[str, Any] = field(default_factory=dict, repr=False)
    """the resolved settings (config.json); not part of metrics.json."""
    result: RolloutResult | None = field(default=None, repr=False, compare=False)
    """the trajectories (per_step.csv, the state-deviation plot); not part of metrics.json."""

    def to_json(self) -> dict[str, Any]:
        """The ``metrics.json`` object (``videos`` only when videos were written)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name in METRIC_KEYS}
        if self.videos is None:
            del out["videos"]
        return out

    @classmethod
    def from_json(cls, metrics: dict[str, Any], config: dict[str, Any] | None = None
                  ) -> RolloutReport:
        """The report of a ``metrics.json`` object (and optionally its ``config.json``)."""
        return cls(**{k: metrics.get(k) for k in METRIC_KEYS}, config=dict(config or {}))

    @property
    def n_actions(self) -> int:
        """Actions taken in the coupled rollout, all actors together."""
        if self.result is not None:
            return sum(a.shape[0] * a.shape[1] for a in self.result.actions.values())
        return round(self.timing["seconds"] * self.timing["actions_per_second"])

    @property
    def warnings(self) -> list[str]:
        """The warnings the evaluation gave (each also issued as a ``QbcWarning``)."""
        found = [self.horizons_capped] if self.horizons_capped else []
        return found + [clipped_warning(name, c["clipped"], c["values"])
                        for name, c in self.clipped_actions.items() if c["clipped"]]


METRIC_KEYS = tuple(f.name for f in fields(RolloutReport) if f.name not in ("config", "result"))


def clipped_warning(name: str, clipped: int, values: int) -> str:
    """The warning text of a quantized expert whose actions were clipped."""
    return f"{name}: " + clipped_message(clipped, values, "expert action")


def write_report(out: str | Path, report: RolloutReport) -> None:
    """config.json, metrics.json, per_step.csv (with the trajectories) and the two plots into
    the folder ``out``, each written atomically."""
    out = Path(out)
    atomic_write_json(out / "config.json", json_safe(report.config))
    metrics = report.to_json()
    atomic_write_json(out / "metrics.json", metrics)
    if report.result is None:
        plot_regret_vs_horizon(metrics, out / "regret_vs_horizon.png", title=report.env_id)
        return
    rows = per_step_table(report.result)
    atomic_write_csv(out / "per_step.csv", rows, lineterminator="\r\n")
    plot_regret_vs_horizon(metrics, out / "regret_vs_horizon.png", title=report.env_id)
    plot_state_deviation(rows, out / "state_deviation.png", reference="expert",
                         title=report.env_id)


def learner_verdict(metrics: dict[str, Any]) -> dict[str, Any] | None:
    """:func:`qbc.rollout.growth.floor_verdict` of the policy at the largest horizon against the
    floor of its decoding (``metrics["floors"]``: the stochastic q#pi* for sampled decoding of a
    smooth tokenizer, else the deterministic one; mean decoding matches none and is compared
    with the deterministic one, which the text says); None without a policy, an expert and a
    quantized expert. The text names the horizon and the floor."""
    per = metrics["policies"]
    floors = metrics.get("floors") or {}
    matching = [name for name, f in floors.items() if f.get("floor_of_decoding") and name in per]
    floor = matching[-1] if matching else "quantized_expert"
    if "policy" not in per or floor not in per or "expert" not in per:
        return None
    h = str(metrics["horizons"][-1])
    verdict = floor_verdict(
        {"regret": per["policy"][h]["regret"], "failed": per["policy"][h]["diverged_fraction"]},
        {"regret": per[floor][h]["regret"], "failed": per[floor][h]["diverged_fraction"]},
        per["expert"][h]["return"])
    unmatched = "" if matching or not floors else (
        " (no floor is that of its decoding, which is not a quantized actor: compared with the "
        "deterministic one)")
    return {**verdict, "horizon": int(h), "floor": floor,
            "text": f"H = {h}, floor {floor}{unmatched}: {verdict['text']}"}


def floor_ratios(metrics: dict[str, Any]) -> dict[str, Any] | None:
    """Per horizon, the chunk learner's regret and divergence beside its chunk floor's, and the
    regret ratio learner / floor (None where the floor's regret is <= 0, as in
    :func:`qbc.rollout.growth.floor_verdict`: no ratio measures the distance to a floor at or
    below the expert); None without a floor."""
    pols = metrics["policies"]
    name = next((n for n in FLOOR_NAMES if n in pols), None)
    if name is None or "policy" not in pols:
        return None
    out = {"floor": name, "horizons": {}}
    for h in metrics["horizons"]:
        p, f = pols["policy"][str(h)], pols[name][str(h)]
        out["horizons"][str(h)] = {
            "regret": p["regret"], "floor_regret": f["regret"],
            "ratio": p["regret"] / f["regret"] if f["regret"] > 0 else None,
            "diverged": p["diverged_fraction"], "floor_diverged": f["diverged_fraction"]}
    return out
