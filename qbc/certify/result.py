"""What ``qbc certify`` found (:class:`Certificate`): the quantities of
:func:`qbc.certify.certificate.certificate` on a dataset's env, expert and tokenizer, what they
were measured with, and measured regret beside them. JSON only at the edge:
:meth:`Certificate.to_json` gives the ``certificate.json`` object (its keys, in order) and
:meth:`Certificate.from_json` reads one back."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

#: Fields whose key in certificate.json is not the field's name.
JSON_KEYS = {"gamma": "gamma_at_(k+1)eps_q", "kappa": "kappa_at_gamma"}
#: Fields left out of certificate.json when None.
OPTIONAL = ("nearest", "measured_regret")


@dataclass
class Certificate:
    """The certificate of one env, expert and tokenizer (the fields in certificate.json's
    order)."""

    env_id: str
    dataset: str
    """the Minari dataset of the demonstrations."""
    expert: str
    """the expert's name; ``expert_spec`` how it was chosen ({"name", "params", "source"})."""
    expert_spec: dict[str, Any]
    tokenizer: dict[str, Any]
    """{"quantizer", "vocab_size"}."""
    n_demos: int
    q_sharp_pi_star: str
    """which q#π* the quantities are of (a stochastic tokenizer's: stochastic rounding)."""
    eps_q: dict[str, Any]
    """ε_q: worst-case bound and in-distribution mean / max (action units)."""
    eps_q_used: float
    eps_q_kind: str
    """'worst case' or 'in distribution (no worst-case bound)': which ε_q the bound shapes
    use."""
    piiss: dict[str, Any]
    """:func:`qbc.certify.certificate.piiss_gain`: the P-IISS gain γ(r) and its verdict."""
    rtvc: dict[str, Any]
    """:func:`qbc.certify.certificate.rtvc_violation_rate`: κ(δ)."""
    gamma: float
    """γ at (k+1)ε_q (certificate.json: ``gamma_at_(k+1)eps_q``)."""
    gamma_grid: str
    """'inside' the measured sizes, or where outside them."""
    kappa: float
    """κ at that γ (certificate.json: ``kappa_at_gamma``)."""
    kappa_grid: str
    bound_shapes: dict[str, Any]
    """the shapes of Theorems 2, 3 and 7 against H (constants 1)."""
    bound_hypotheses: dict[str, Any]
    """per theorem: its hypotheses, whether each holds here, and whether it applies."""
    note: str
    nearest: dict[str, Any] | None = None
    """a stochastic tokenizer's nearest-rounding q#π*: its ε_q, κ, γ (Theorem 3's)."""
    measured_regret: dict[str, dict[str, float]] | None = None
    """per policy of a ``qbc rollout`` (--rollout) and H: its measured regret."""

    def to_json(self) -> dict[str, Any]:
        """The ``certificate.json`` object."""
        out = {JSON_KEYS.get(f.name, f.name): getattr(self, f.name) for f in fields(self)}
        for name in OPTIONAL:
            if out[name] is None:
                del out[name]
        return out

    @classmethod
    def from_json(cls, cert: dict[str, Any]) -> Certificate:
        """The certificate of a ``certificate.json`` object."""
        return cls(**{f.name: cert.get(JSON_KEYS.get(f.name, f.name)) for f in fields(cls)})
