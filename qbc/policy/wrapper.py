"""The numpy-facing policy: normalisation, observation history, decoding, action units."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from qbc.errors import CorruptFileError, InvalidValueError, NonFiniteObservationError
from qbc.policy.decoding import check_decode_mode
from qbc.policy.inference import onednn_disabled
from qbc.quantizers.base import as_real_array


@dataclass
class Normalizer:
    """Per-component mean and standard deviation of observations and actions (training split).

    The networks see (obs - obs_mean) / obs_std; continuous baselines predict
    (action - act_mean) / act_std. Components with (near) zero spread get std 1.
    """

    obs_mean: np.ndarray
    obs_std: np.ndarray
    act_mean: np.ndarray
    act_std: np.ndarray

    @classmethod
    def fit(cls, observations: np.ndarray, actions: np.ndarray) -> Normalizer:
        """From observations (N, obs_dim) and actions (N, D)."""
        def stats(x):
            x = np.asarray(x, dtype=np.float64)
            std = x.std(axis=0)
            return x.mean(axis=0), np.where(std > 1e-8, std, 1.0)
        om, os_ = stats(observations)
        am, as_ = stats(actions)
        return cls(*(v.astype(np.float32) for v in (om, os_, am, as_)))

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k).tolist() for k in ("obs_mean", "obs_std", "act_mean",
                                                          "act_std")}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Normalizer:
        try:
            vals = [np.asarray(d[k], dtype=np.float32)
                    for k in ("obs_mean", "obs_std", "act_mean", "act_std")]
        except (KeyError, TypeError, ValueError, OverflowError) as exc:  # 10**400: Overflow
            raise CorruptFileError(f"normalizer is incomplete or damaged: {exc}") from None
        if any(v.ndim != 1 for v in vals) or not all(np.isfinite(v).all() for v in vals):
            raise CorruptFileError("normalizer holds non-finite or non-vector entries")
        if not all((v > 0).all() for v in vals[1::2]):
            raise CorruptFileError("normalizer holds a standard deviation <= 0")
        if vals[0].shape != vals[1].shape or vals[2].shape != vals[3].shape:
            raise CorruptFileError(
                f"normalizer means and standard deviations differ in length (obs "
                f"{len(vals[0])} / {len(vals[1])}, actions {len(vals[2])} / {len(vals[3])})")
        return cls(*vals)

    def obs(self, obs: np.ndarray) -> np.ndarray:
        return ((obs - self.obs_mean) / self.obs_std).astype(np.float32)

    def unnormalize_actions(self, a: np.ndarray) -> np.ndarray:
        return (a * self.act_std + self.act_mean).astype(np.float32)


class Policy:
    """A trained policy acting on batches of numpy observations.

    ``act(obs (B, obs_dim)) -> actions (B, act_dim)`` float32. With ``obs_history = k > 1`` the
    policy keeps the last k observations of each of the B rows between calls (call
    :meth:`reset` at episode starts; a fresh row repeats its first observation), or takes the
    history directly as (B, k, obs_dim).

    Token policies decode by ``decode_mode``: ``"argmax"``, ``"sample"`` (with ``temperature``) or
    ``"mean"`` (per position the expected codeword under the predicted distribution; the tokens
    that later positions are conditioned on are the argmax tokens, or sampled ones when
    ``act(..., deterministic=False)``). ``deterministic=False`` turns ``argmax`` into ``sample``.
    ``env_id``: the Gymnasium id of the env the training data came from, when known.

    Observations holding NaN or inf raise :class:`~qbc.errors.NonFiniteObservationError` (an
    InvalidValueError): a network would turn them into finite, meaningless actions.

    ``disable_onednn`` (opt-in, default off): on CPU, switch oneDNN off process-wide for the
    duration of each call (:func:`~qbc.policy.inference.onednn_disabled`); batch-1 decoding of the
    then-default model went from ~1.0 to ~0.8 ms in ``qbc bench --quick`` at commit 47cef66
    (the measurement is in :mod:`qbc.policy.inference`), results equal up to rounding.
    """

    def __init__(self, module: nn.Module, normalizer: Normalizer, tokenizer: Any = None,
                 decode_mode: str = "argmax", temperature: float = 1.0, use_cache: bool = True,
                 device: str | torch.device = "cpu", env_id: str | None = None,
                 disable_onednn: bool = False):
        self.module = module.to(device).eval()
        self.normalizer = normalizer
        self.tokenizer = tokenizer
        self.decode_mode = decode_mode
        self.temperature = temperature
        self.use_cache = use_cache
        self.device = torch.device(device)
        self.env_id = env_id  # the env of the training data, when known
        self.disable_onednn = disable_onednn
        self._hist: np.ndarray | None = None
        self._fresh: np.ndarray | None = None
        #: what sampled decoding draws from when ``act`` is given no generator (None: torch's
        #: global generator); a CPU generator gives the same draws on every device.
        self.generator: torch.Generator | None = None

    # -- facts -----------------------------------------------------------------------------
    @property
    def kind(self) -> str:
        return self.module.kind

    @property
    def obs_history(self) -> int:
        return self.module.cfg.obs_history

    @property
    def obs_dim(self) -> int:
        return self.module.cfg.obs_dim

    @property
    def act_dim(self) -> int:
        return len(self.normalizer.act_mean)

    @property
    def decode_mode(self) -> str:
        return self._decode_mode

    @decode_mode.setter
    def decode_mode(self, mode: str) -> None:
        self._decode_mode = check_decode_mode(mode)

    # -- observation handling --------------------------------------------------------------
    def reset(self, mask: np.ndarray | None = None) -> None:
        """Forget the observation history of every row (call at the start of a batch of
        episodes), or with ``mask`` (B,) bool only of the rows where it is true."""
        if mask is not None:
            self.reset_rows(mask)
            return
        self._hist, self._fresh = None, None

    def reset_rows(self, mask: np.ndarray) -> None:
        """Forget the history of the rows where ``mask`` (B,) is true (their episodes restart)."""
        if self._fresh is not None:
            mask = as_real_array(mask, "the reset mask", np.float32, booleans=True)
            if mask.shape != self._fresh.shape:
                raise InvalidValueError(f"the reset mask must have shape {self._fresh.shape} (one "
                                        f"entry per row of the batch), got {mask.shape}")
            self._fresh |= mask.astype(bool)

    def _obs_tensor(self, obs: np.ndarray) -> torch.Tensor:
        obs = as_real_array(obs, "observations", np.float32, booleans=True)
        if not np.isfinite(obs).all():
            rows = np.flatnonzero(~np.isfinite(obs.reshape(len(obs), -1)).all(1)) \
                if obs.ndim > 1 else [0]
            raise NonFiniteObservationError(
                f"observations hold NaN/inf (or values beyond float32) in {len(rows)} row(s) "
                "(first: "
                f"{list(map(int, rows[:5]))}); a policy cannot act on them: end those episodes "
                "(or repair the observations) before calling act")
        if obs.ndim == 1:
            obs = obs[None]
        K = self.obs_history
        if obs.shape[-1] != self.obs_dim or obs.ndim not in (2, 3) or (
                obs.ndim == 3 and obs.shape[1] != K):
            raise InvalidValueError(
                f"observations must have shape (B, {self.obs_dim}) or (B, {K}, {self.obs_dim}), "
                f"got {obs.shape}")
        if obs.ndim == 2:
            if K == 1:
                obs = obs[:, None]
            else:
                obs = self._push_history(obs)
        return torch.from_numpy(self.normalizer.obs(obs)).to(self.device)

    def _push_history(self, obs: np.ndarray) -> np.ndarray:
        B = obs.shape[0]
        if self._hist is None or self._hist.shape[0] != B:
            self._hist = np.repeat(obs[:, None], self.obs_history, axis=1)
            self._fresh = np.zeros(B, dtype=bool)
        else:
            self._hist = np.concatenate([self._hist[:, 1:], obs[:, None]], axis=1)
            if self._fresh.any():
                self._hist[self._fresh] = obs[self._fresh, None]
                self._fresh[:] = False
        return self._hist.copy()

    # -- acting ------------------------------------------------------------------------------
    @contextmanager
    def _inference(self) -> Iterator[None]:
        """No autograd; oneDNN off for the call when ``disable_onednn`` is set (CPU only)."""
        with torch.no_grad(), onednn_disabled(self.disable_onednn and self.device.type == "cpu"):
            yield

    def draws(self, generator: torch.Generator | None = None) -> torch.Generator | None:
        """The generator sampled decoding draws from: ``generator``, else :attr:`generator`
        (None: torch's global one). Seed it for repeatable samples:
        ``policy.generator = torch.Generator().manual_seed(seed)``."""
        return generator if generator is not None else self.generator

    def act(self, obs: np.ndarray, *, deterministic: bool = True,
            generator: torch.Generator | None = None) -> np.ndarray:
        """Actions (B, act_dim) float32 for observations (B, obs_dim) (or (B, k, obs_dim)): the
        :class:`qbc.stepping.actor.Actor` protocol. Sampling draws from ``generator``, else from
        :attr:`generator`."""
        x = self._obs_tensor(obs)
        generator = self.draws(generator)
        with self._inference():
            if not self.module.is_token_policy:
                a = self.module.predict(x, deterministic=deterministic, generator=generator)
                return self.normalizer.unnormalize_actions(a.float().cpu().numpy())
            mode = self.decode_mode
            sample = mode == "sample" or not deterministic
            tokens, probs = self.module.decode(x, sample=sample, temperature=self.temperature,
                                               generator=generator, use_cache=self.use_cache)
        if mode == "mean":
            return self.tokenizer.expected_action(probs.cpu().numpy())
        return self.tokenizer.decode(tokens.cpu().numpy())

    def act_tokens(self, obs: np.ndarray, *, deterministic: bool = True,
                   generator: torch.Generator | None = None) -> np.ndarray:
        """Token policies: the action tokens (B, n_tokens) int64 that :meth:`act` decodes
        (argmax, or sampled when ``decode_mode == "sample"`` or not ``deterministic``)."""
        if not self.module.is_token_policy:
            raise InvalidValueError(f"policy {self.kind!r} does not emit tokens")
        x = self._obs_tensor(obs)
        generator = self.draws(generator)
        sample = self.decode_mode == "sample" or not deterministic
        with self._inference():
            tokens, _ = self.module.decode(x, sample=sample, temperature=self.temperature,
                                           generator=generator, use_cache=self.use_cache)
        return tokens.cpu().numpy().astype(np.int64)

    def action_distribution(self, obs: np.ndarray) -> Any:
        """Token policies: probabilities (B, n_tokens, V), later positions conditioned on the
        argmax tokens before them. ``mlp-gaussian``: (mean, std), each (B, act_dim), in action
        units. ``mlp-mse`` has no distribution (InvalidValueError)."""
        x = self._obs_tensor(obs)
        with self._inference():
            if self.module.is_token_policy:
                _, probs = self.module.decode(x, sample=False, use_cache=self.use_cache)
                return probs.cpu().numpy()
            if hasattr(self.module, "distribution"):
                mean, std = self.module.distribution(x)
                n = self.normalizer
                return (n.unnormalize_actions(mean.cpu().numpy()),
                        (std.cpu().numpy() * n.act_std).astype(np.float32))
        raise InvalidValueError(f"policy {self.kind!r} is deterministic and has no distribution")

    def __repr__(self) -> str:
        tok = f", tokenizer={self.tokenizer!r}" if self.tokenizer is not None else ""
        return f"Policy(kind={self.kind!r}, decode_mode={self.decode_mode!r}{tok})"

