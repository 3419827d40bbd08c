"""Whether a `qbc rollout` deployed the policy as Theorem 7 needs: Algorithm 1, i.e. the policy
acts on a learned transition model's state, advanced by a *sample* of the model's next state
and never reset to the observed one. qbc's model-based run (``--augment model``) advances the
state by the model's mean unless ``--model-sample`` is given, and can re-sync it
(``--resync-every``): both are variants of qbc's, not the algorithm the theorem is about."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

#: the actor name of the model-based run in a rollout's metrics.json
MODEL_BASED_RUN = "policy_model_based"


def algorithm_1_deployment(policies: Collection[str] | None, config: dict[str, Any] | None
                           ) -> tuple[bool | None, str]:
    """(holds, how): whether a rollout ran Algorithm 1, from the actor names of its
    metrics.json (``policies``; None: no rollout given) and its config.json (``config``; None
    or without the settings: not known), and the reason in words."""
    if policies is None:
        return None, "no rollout given"
    if MODEL_BASED_RUN not in policies:
        return False, (f"the rollout given has no {MODEL_BASED_RUN} run "
                       "(qbc rollout --augment model)")
    sample, resync = (config or {}).get("model_sample"), (config or {}).get("resync_every")
    if not isinstance(sample, bool) or type(resync) is not int:
        return None, (f"the rollout's config.json does not record how its {MODEL_BASED_RUN} "
                      "run advanced the model state (model_sample, resync_every)")
    if not sample:
        return False, (f"its {MODEL_BASED_RUN} run advanced the model state by the model's mean "
                       "(qbc's default), not by a sample as Algorithm 1 does: roll out with "
                       "--model-sample")
    if resync:
        return False, (f"its {MODEL_BASED_RUN} run reset the model state to the observed one "
                       f"every {resync} steps (--resync-every), which Algorithm 1 never does")
    return True, (f"its {MODEL_BASED_RUN} run sampled the model state and never reset it "
                  "(Algorithm 1)")
