"""The policy of Cao & Xie's Theorem 6: accurate on the expert's states, lossy forever.

On ``qbc/Arctan-v0`` (x' = A·x + B·u, expert u = arctan x) the policy emits the token that the
adversarial learned quantizer ``theorem6`` gives the expert's action, and decodes it with that
quantizer's codewords. Its token sequence on the expert's states is exactly the expert's; only
the codewords are adversarial. Deployed plainly it drifts into I_P, is pushed into I_T1 and then
cycles I_T1 ↔ I_T2 at a per-step loss of order one (0.47 at ε = 0.1, 0.70 at ε = 0.01 over
H = 1000 in docs/results/counterexample; about 0.74 as ε → 0); deployed on a model's state
(:class:`qbc.rollout.augment.ModelAugmentedPolicy`) its per-step loss stays a small multiple of
ε (3.55ε to 3.58ε at H = 1000 there).
"""

from __future__ import annotations

import numpy as np

from qbc.quantizers.construction import check_theorem6_conditions
from qbc.tokenizer import ActionTokenizer


class Theorem6Policy:
    """Token policy ``tokens = q(arctan(x))`` with the ``theorem6`` quantizer q.

    Args:
        A, B, k, d, eps: the construction's parameters; a combination that violates the
            theorem's conditions is refused with the list of violated conditions.
    """

    def __init__(self, A: float = 0.2, B: float = 0.3, k: float = 2.0, d: float = 1.2,
                 eps: float = 0.1):
        check_theorem6_conditions(A, B, k, d, eps)
        self.params = {"A": A, "B": B, "k": k, "d": d, "eps": eps}
        self.tokenizer = ActionTokenizer("theorem6", quantizer_params=self.params).fit(
            np.zeros((1, 1)))

    def act_tokens(self, obs: np.ndarray) -> np.ndarray:
        """States (B, 1) -> tokens (B, 1)."""
        return self.tokenizer.encode(np.arctan(np.asarray(obs, dtype=np.float64)))

    def act(self, obs: np.ndarray, deterministic: bool = True, rng=None) -> np.ndarray:
        """States (B, 1) -> actions (B, 1) float32 (the adversarial codewords)."""
        return self.tokenizer.decode(self.act_tokens(obs))
