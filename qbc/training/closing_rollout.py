"""The typed result of a training run's closing rollout (:func:`qbc.training.evaluation.
rollout_evaluation`): the learner against the dataset's expert on the same seeds, the other
actors rolled out beside them (the quantized expert, a chunk policy's chunk floor) and the
verdict against the floor. :meth:`ClosingRollout.to_json` is the ``rollout`` entry of a run's
``summary.json``: flat ``{actor}_{metric}`` keys, as the file has always held them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Per-actor metrics, in the order summary.json lists them (``{actor}_{metric}``).
ACTOR_METRICS = ("mean_return", "reward_per_step", "failed_fraction", "success",
                 "success_ci95", "modes")
#: The header of the entry, in summary.json's order.
HEADER = ("env_id", "episodes", "horizon", "first_seed", "horizon_capped", "expert",
          "no_expert")


@dataclass
class ActorOutcome:
    """One actor's numbers over the closing rollout's episodes and horizon."""

    mean_return: float
    """mean return over the full horizon (an ended episode earns nothing after it ends)."""
    reward_per_step: float
    """mean_return / horizon."""
    failed_fraction: float
    """fraction of episodes that terminated or diverged."""
    success: float | None = None
    """success rate, where the env reports success."""
    success_ci95: list[float] | None = None
    """its 95% Wilson interval."""
    modes: dict[str, float] | None = None
    """fraction of episodes per mode, where the env reports ``info["mode"]``."""
    regret: float | None = None
    """J(expert) - J(actor) on the same seeds: actors other than the expert and the policy
    (the policy's own regret, with its interval, is :attr:`ClosingRollout.regret`)."""


@dataclass
class ChunkExecution:
    """How a chunk policy was executed in the rollout."""

    execute: str
    """execution mode: open-loop, receding:M or ensemble:C."""
    chunks: int
    """chunks predicted."""
    decode_failures: int
    """chunks whose tokens did not decode (repaired)."""


@dataclass
class ClosingRollout:
    """The closing rollout of a run: ``actors`` by name ('expert' when there is one, 'policy',
    'quantized_expert' of a token policy, a chunk policy's 'chunk_floor'), the policy's regret
    and the floor's, and the verdict (:func:`qbc.rollout.growth.floor_verdict`)."""

    env_id: str
    episodes: int
    horizon: int
    """steps per episode (capped at a third-party env's time limit)."""
    first_seed: int
    """episode i is reset with first_seed + i."""
    horizon_capped: str | None
    """the warning when the horizon was capped, else None."""
    expert: str | None
    """the expert's name; None when the dataset names none (see ``no_expert``)."""
    no_expert: str | None
    """why there is no expert, else None."""
    actors: dict[str, ActorOutcome] = field(default_factory=dict)
    regret: float | None = None
    """the policy's regret against the expert (None without an expert)."""
    regret_ci95: list[float] | None = None
    floor_regret: float | None = None
    """the quantized expert's regret (token policies with an expert)."""
    floor_regret_ci95: list[float] | None = None
    verdict: dict[str, Any] | None = None
    """learner against floor: ratio, target, met, the likely cause of a miss and its text."""
    execution: ChunkExecution | None = None
    """chunk policies: how the chunks were executed."""

    def to_json(self) -> dict[str, Any]:
        """The flat entry of summary.json (the keys and order of the file as it always was)."""
        out: dict[str, Any] = {k: getattr(self, k) for k in HEADER}
        for name, a in self.actors.items():
            for metric in ACTOR_METRICS:
                value = getattr(a, metric)
                if value is not None or metric in ACTOR_METRICS[:3]:
                    out[f"{name}_{metric}"] = value
        if self.expert is not None:
            out.update(regret=self.regret, regret_ci95=self.regret_ci95)
            out.update({f"{name}_regret": a.regret for name, a in self.actors.items()
                        if name not in ("expert", "policy")})
        if self.floor_regret is not None:
            out.update(floor_regret=self.floor_regret, floor_regret_ci95=self.floor_regret_ci95,
                       verdict=self.verdict)
        if self.execution is not None:
            out.update(execute=self.execution.execute, chunks=self.execution.chunks,
                       decode_failures=self.execution.decode_failures)
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ClosingRollout:
        """The inverse of :meth:`to_json`."""
        names = [k.removesuffix("_mean_return") for k in d if k.endswith("_mean_return")]
        actors = {n: ActorOutcome(**{m: d.get(f"{n}_{m}") for m in ACTOR_METRICS},
                                  regret=d.get(f"{n}_regret")) for n in names}
        execution = (ChunkExecution(d["execute"], d["chunks"], d["decode_failures"])
                     if "execute" in d else None)
        return cls(**{k: d[k] for k in HEADER}, actors=actors, regret=d.get("regret"),
                   regret_ci95=d.get("regret_ci95"), floor_regret=d.get("floor_regret"),
                   floor_regret_ci95=d.get("floor_regret_ci95"), verdict=d.get("verdict"),
                   execution=execution)
