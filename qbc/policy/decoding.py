"""Pieces shared by the token policies: the log-loss and picking a token from logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from qbc.errors import InvalidValueError, UnknownNameError

#: How a token policy turns its per-position distributions into an action.
#: ``argmax``: most likely token at each position; ``sample``: draw a token (temperature);
#: ``mean``: expected codeword at each position (the prefix is argmax tokens when acting
#: deterministically, sampled tokens otherwise).
DECODE_MODES = ("argmax", "sample", "mean")


def check_decode_mode(mode: str) -> str:
    if mode not in DECODE_MODES:
        raise UnknownNameError("decode mode", mode, DECODE_MODES)
    return mode


def parse_decoding(text: str, where: str = "") -> tuple[str, float]:
    """A decoding as ``qbc rollout --decode``, the ledger's ``--decodings`` and a sweep file's
    ``[train] decode`` write it: ``"sample:0.5"`` -> ("sample", 0.5), ``"argmax"`` ->
    ("argmax", 1.0); an unknown mode, a temperature on another mode, or one that is not a finite
    number > 0 is refused (``where``: the start of the InvalidValueError's message)."""
    mode, colon, temperature = str(text).partition(":")
    check_decode_mode(mode)
    if colon and mode != "sample":
        raise InvalidValueError(f"{where}only sample takes a temperature (sample:T), got {text!r}")
    try:
        value = float(temperature) if colon else 1.0
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise InvalidValueError(f"{where}the temperature of {text!r} must be a number > 0")
    return mode, value


def token_log_loss(logits: torch.Tensor, tokens: torch.Tensor,
                   soft: torch.Tensor | None = None) -> torch.Tensor:
    """Mean log-loss (nats per token) of logits (B, n_tokens, V).

    With ``soft`` (B, n_tokens, V) target distributions (two-hot smooth binning) the loss is the
    cross-entropy against them, sum_k soft_k * (-log q_k), i.e. the expected log-loss of the
    sampled token; otherwise plain cross-entropy against the integer ``tokens`` (B, n_tokens).
    """
    logp = F.log_softmax(logits.float(), dim=-1)
    if soft is not None:
        return -(soft * logp).sum(-1).mean()
    return F.nll_loss(logp.reshape(-1, logp.shape[-1]), tokens.reshape(-1))


def pick_tokens(logits: torch.Tensor, sample: bool, temperature: float = 1.0,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Choose one token per row of logits (B, V); returns tokens (B,) int64 and probs (B, V).

    Sampling draws exactly one uniform number per row from ``generator`` (inverse CDF), so two
    decoders that see the same logits in the same order draw the same tokens.
    """
    if not sample:
        return logits.argmax(-1), F.softmax(logits.float(), dim=-1)
    probs = F.softmax(logits.float() / max(temperature, 1e-6), dim=-1)
    dev = generator.device if generator is not None else logits.device
    u = torch.rand(logits.shape[0], 1, generator=generator, device=dev).to(logits.device)
    cdf = probs.cumsum(-1)
    tokens = torch.searchsorted(cdf, u * cdf[:, -1:], right=True).squeeze(1)
    return tokens.clamp_(max=logits.shape[-1] - 1), probs
