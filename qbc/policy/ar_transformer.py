"""The autoregressive transformer policy over action tokens (nanoGPT-sized).

Sequence layout for an observation history of K steps and an action of n tokens (D per-dimension
tokens, or 1 for a joint tokenizer)::

    position:  0 .. K-1                 K      ..  K+n-2
    input:     obs_{t-K+1} .. obs_t     tok_0  ..  tok_{n-2}
    predicts:  -  ..  tok_0             tok_1  ..  tok_{n-1}

Each observation is embedded by a linear map; each token by an embedding table of its own
dimension (token d with value v -> row d*V + v); learned positions are added. Attention is causal,
so the output at position K-1+i sees the observations and tokens 0..i-1 only: the model is
p(tok_i | obs, tok_<i), trained by log-loss (cross-entropy) on the token sequence.

With ``ordered_head`` (a per-dimension tokenizer), token i's logits are the free ones of its
output head plus -p_i / 2 (c_iv - m_i)^2 for each bin v, where c_iv is the bin's codeword scaled
to [-1, 1], m_i = a_i . obs_t + g_i(obs_t) a location (linear in the current normalised
observation, plus a ReLU MLP g of it; with ``loc_trunk``, the default, plus w_i . h_i, a linear
function of the transformer's hidden state) and p_i > 0 a learned precision. Without
``loc_trunk`` the earlier tokens and the observation history reach token i through its free
logits alone. The free logits are bounded (they read a layer-normed state), the
location is not: far outside the data the argmax is the bin nearest to the extrapolated
location, clipped at the edge bin, as the quantized expert clips the expert's action. The MLP
(``loc_layers``) is the regressor a continuous policy would be (measured in
docs/guide/training.md).

Decoding runs the prefix once and then one position per token, reusing the keys and values of
earlier positions (KV cache); ``use_cache=False`` recomputes the whole sequence at every step
and gives the same tokens.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from qbc.policy.decoding import pick_tokens, token_log_loss
from qbc.policy.inference import decoding_context
from qbc.policy.registry import TRANSFORMER_READS, ModelConfig, register_policy
from qbc.policy.transformer import Block, KVCache, run

#: Constrained decoding: ``constraint(B, device)`` starts a batch and returns
#: ``allowed(i, previous tokens (B,) or None at i = 0) -> (B, V) bool``, the tokens position i
#: may take (every row must allow at least one); see :mod:`qbc.policy.chunked`.
Constraint = Callable[[int, torch.device],
                      Callable[[int, "torch.Tensor | None"], torch.Tensor]]

#: The ordered head's precision is kept below e^this (finite logits in float32).
MAX_LOG_PRECISION = 30.0


@dataclass
class ARTransformerConfig:
    """Shape of an :class:`ARTransformerPolicy`."""

    obs_dim: int
    """length of one observation vector."""
    n_tokens: int
    """tokens per action (action dimensions D, or 1 for a joint tokenizer)."""
    vocab_size: int
    """distinct values of each token."""
    obs_history: int = 1
    """observations in the prefix (the current one and the K-1 before it)."""
    d_model: int = 64
    """width of the residual stream."""
    n_layers: int = 2
    """transformer blocks."""
    n_heads: int = 4
    """attention heads (d_model must be divisible by it)."""
    mlp_ratio: int = 4
    """hidden width of each MLP as a multiple of d_model."""
    dropout: float = 0.0
    """dropout on attention outputs and MLP outputs during training."""
    ordered_head: bool = False
    """add an ordered-bins term to each token's logits (see :meth:`ARTransformerPolicy.
    set_bin_centers`): a scalar location per token (linear in the current observation, plus a
    ReLU MLP of it; with ``loc_trunk``, plus a function of the hidden state) scores each bin by
    minus its squared distance from the codeword. Far outside the data the location is
    piecewise linear and unbounded, so the argmax ends at an edge bin, not an arbitrary one.
    Per-dimension only."""
    loc_layers: int = 0
    """ordered head: hidden layers of an MLP of the current observation added to the location
    (0: the linear location alone, as in checkpoints saved without this field)."""
    loc_hidden: int = 256
    """ordered head: width of that MLP's hidden layers."""
    loc_trunk: bool = True
    """ordered head: add w_i . h_i, a linear function of the transformer's hidden state, to each
    location (True in checkpoints saved without this field)."""

    @property
    def seq_len(self) -> int:
        return self.obs_history + self.n_tokens - 1

def _location_mlp(obs_dim: int, n: int, hidden: int, layers: int) -> nn.Module | None:
    """ReLU MLP obs_dim -> hidden (x layers) -> n, or None for ``layers`` = 0. ReLU keeps it
    piecewise linear, so beyond the data the location still extrapolates along a line."""
    if layers == 0:
        return None
    sizes = [obs_dim] + [hidden] * layers
    parts: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        parts += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*parts, nn.Linear(hidden, n))


def _build(m: ModelConfig, obs_dim: int, act_dim: int, n_tokens: int, vocab: int
           ) -> ARTransformerPolicy:
    """The kind from ``qbc train``'s model settings; the ordered head with a per-dimension
    tokenizer (one token per action dimension) and ``--model.head ordered``."""
    return ARTransformerPolicy(ARTransformerConfig(
        obs_dim=obs_dim, n_tokens=n_tokens, vocab_size=vocab, obs_history=m.obs_history,
        d_model=m.d_model, n_layers=m.n_layers, n_heads=m.n_heads, mlp_ratio=m.mlp_ratio,
        dropout=m.dropout, ordered_head=m.head == "ordered" and n_tokens == act_dim,
        loc_layers=m.loc_layers, loc_hidden=m.hidden, loc_trunk=m.loc_inputs == "obs+trunk"))


def _size(m: ModelConfig, act_dim: int, vocab: int) -> int:
    """Attention and MLP matrices per block, the embeddings and the output heads."""
    d = m.d_model
    return (m.n_layers * ((4 + 2 * m.mlp_ratio) * d * d + 1)
            + (m.obs_history + 2 * act_dim * max(vocab, 1)) * d)


@register_policy("ar-transformer", ARTransformerConfig, tokens=True, build=_build, size=_size,
                 head=True, reads=(*TRANSFORMER_READS, "hidden", "head", "loc_layers",
                                         "loc_inputs"))
class ARTransformerPolicy(nn.Module):
    """p(tok_i | obs history, tok_<i) for the n tokens of an action.

    Works on normalised observations (B, K, obs_dim) and integer tokens (B, n_tokens); the
    numpy-facing :class:`qbc.policy.Policy` wraps it with the normaliser and the tokenizer.
    """

    def __init__(self, cfg: ARTransformerConfig):
        super().__init__()
        self.cfg = cfg
        d, n, V = cfg.d_model, cfg.n_tokens, cfg.vocab_size
        self.obs_embed = nn.Linear(cfg.obs_dim, d)
        self.tok_embed = nn.Embedding(n * V, d)  # a table per token position (action dimension)
        self.pos_embed = nn.Embedding(cfg.seq_len, d)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(d)
        # One output head per token position: dimensions have different codebooks.
        self.head_w = nn.Parameter(torch.empty(n, V, d))
        self.head_b = nn.Parameter(torch.zeros(n, V))
        if cfg.ordered_head:
            # codewords per token position, scaled to [-1, 1] (set from the tokenizer)
            self.register_buffer("bin_centers", torch.linspace(-1, 1, V).repeat(n, 1))
            self.loc_obs = nn.Linear(cfg.obs_dim, n)
            self.loc_mlp = _location_mlp(cfg.obs_dim, n, cfg.loc_hidden, cfg.loc_layers)
            if cfg.loc_trunk:
                self.loc_w = nn.Parameter(torch.zeros(n, d))
            # log precision: at init a one-bin shift of the location moves a logit by ~1 nat
            self.log_prec = nn.Parameter(torch.full((n,), math.log(max(V - 1, 1) ** 2 / 2)))
        self.apply(self._init_weights)
        nn.init.normal_(self.head_w, std=0.02)

    def set_bin_centers(self, codebooks) -> None:
        """Codewords (n_tokens, V) in action units (``ActionTokenizer.codebooks()`` of a
        per-dimension layout) for the ordered head, stored scaled to [-1, 1] per position."""
        if not self.cfg.ordered_head:
            return
        c = torch.as_tensor(codebooks, dtype=torch.float32).reshape(self.bin_centers.shape)
        lo, hi = c.min(1, keepdim=True).values, c.max(1, keepdim=True).values
        self.bin_centers.copy_((2 * c - lo - hi) / (hi - lo).clamp_min(1e-12))

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)

    def config_dict(self) -> dict:
        return asdict(self.cfg)

    # -- embedding and the trunk -------------------------------------------------------------
    def _embed_obs(self, obs: torch.Tensor) -> torch.Tensor:
        """obs (B, K, obs_dim) -> (B, K, d_model) at positions 0..K-1."""
        K = self.cfg.obs_history
        return run(self.obs_embed, obs) + self.pos_embed.weight[:K]

    def _embed_tokens(self, tokens: torch.Tensor, first: int = 0) -> torch.Tensor:
        """tokens (B, j) of dimensions first..first+j-1 -> (B, j, d_model) at their positions."""
        j = tokens.shape[1]
        if j == 1:  # a decoding step: integer offsets, no index tensors to build
            return (run(self.tok_embed, tokens + first * self.cfg.vocab_size)
                    + self.pos_embed.weight[self.cfg.obs_history + first])
        dims = torch.arange(first, first + j, device=tokens.device)
        pos = self.cfg.obs_history + dims
        return run(self.tok_embed, dims * self.cfg.vocab_size + tokens) + run(self.pos_embed, pos)

    def _trunk(self, x: torch.Tensor, cache: KVCache | None = None
               ) -> tuple[torch.Tensor, KVCache]:
        """Run the blocks on x (B, L, d_model); ``cache`` holds earlier positions (then L = 1)."""
        new_cache = []
        for i, block in enumerate(self.blocks):
            x, kv = run(block, x, None if cache is None else cache[i])
            new_cache.append(kv)
        return run(self.ln_f, x), new_cache

    def _head(self, h: torch.Tensor, first: int = 0) -> torch.Tensor:
        """Hidden states h (B, j, d_model) for tokens first..first+j-1 -> logits (B, j, V)."""
        j = h.shape[1]
        return (torch.einsum("bjd,jvd->bjv", h, self.head_w[first:first + j])
                + self.head_b[first:first + j])

    def _location(self, obs: torch.Tensor) -> torch.Tensor:
        """The observation's part of the ordered head's locations: obs (B, obs_dim), the current
        normalised observation -> (B, n_tokens)."""
        loc = run(self.loc_obs, obs)
        return loc if self.loc_mlp is None else loc + run(self.loc_mlp, obs)

    def _ordered(self, h: torch.Tensor, loc_obs: torch.Tensor, first: int = 0) -> torch.Tensor:
        """The ordered head's logits (B, j, V) for hidden states h (B, j, d_model) of tokens
        first..first+j-1, given ``loc_obs`` (B, n_tokens), the observation's part of the
        locations: -precision / 2 * (codeword - location)^2 up to a per-row constant."""
        j = h.shape[1]
        c = self.bin_centers[first:first + j]
        loc = loc_obs[:, first:first + j]
        if self.cfg.loc_trunk:
            loc = loc + (h * self.loc_w[first:first + j]).sum(-1)
        prec = self.log_prec[first:first + j].clamp(max=MAX_LOG_PRECISION).exp()
        return prec[:, None] * (loc[..., None] * c - 0.5 * c * c)

    # -- training ------------------------------------------------------------------------------
    def logits(self, obs: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits (B, n_tokens, V) for obs (B, K, obs_dim), tokens (B, n_tokens)."""
        x = torch.cat([self._embed_obs(obs), self._embed_tokens(tokens[:, :-1])], dim=1)
        h, _ = self._trunk(x)
        h = h[:, self.cfg.obs_history - 1:]
        if self.cfg.ordered_head:
            return self._head(h) + self._ordered(h, self._location(obs[:, -1]))
        return self._head(h)

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Log-loss (nats per token). ``batch``: obs (B, K, obs_dim), tokens (B, n_tokens) (the
        conditioning prefix, and the targets unless given) and optionally soft (B, n_tokens, V)
        target distributions (smooth binning's two-hot targets)."""
        return token_log_loss(self.logits(batch["obs"], batch["tokens"]), batch["tokens"],
                              batch.get("soft"))

    # -- decoding ------------------------------------------------------------------------------
    def decode(self, obs: torch.Tensor, sample: bool = False, temperature: float = 1.0,
               generator: torch.Generator | None = None, use_cache: bool = True,
               stop_token: int | None = None, constraint: Constraint | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Generate the n tokens for obs (B, K, obs_dim), one position at a time.

        Returns tokens (B, n_tokens) int64 and the distribution each was drawn from,
        probs (B, n_tokens, V) (each conditioned on the tokens chosen before it).
        With ``stop_token``, generation ends once every row has emitted it; the positions not
        generated are filled with ``stop_token`` (probability 1) — variable-length codes.
        With ``constraint``, the tokens it disallows get probability 0 at every position
        (constrained decoding; see :data:`Constraint`).
        """
        # inference_mode skips autograd's bookkeeping, a large share of a small batch's cost
        # (oneDNN stays as the caller set it: see qbc.policy.inference); the clones hand back
        # ordinary tensors (usable anywhere, e.g. as training targets).
        with decoding_context(obs.device):
            tokens, probs = self._decode(obs, sample, temperature, generator, use_cache,
                                         stop_token, constraint)
        return tokens.clone(), probs.clone()

    def _decode(self, obs, sample, temperature, generator, use_cache, stop_token=None,
                constraint=None):
        n = self.cfg.n_tokens
        tokens, probs = [], []
        allowed = None if constraint is None else constraint(obs.shape[0], obs.device)
        ended = torch.zeros(obs.shape[0], dtype=torch.bool, device=obs.device)
        if use_cache:
            h, cache = self._trunk(self._embed_obs(obs))
        loc_obs = self._location(obs[:, -1]) if self.cfg.ordered_head else None
        for i in range(n):
            if not use_cache:
                prefix = [self._embed_obs(obs)]
                if i:
                    prefix.append(self._embed_tokens(torch.stack(tokens, dim=1)))
                h, _ = self._trunk(torch.cat(prefix, dim=1))
            logits = F.linear(h[:, -1], self.head_w[i], self.head_b[i])
            if loc_obs is not None:
                logits = logits + self._ordered(h[:, -1:], loc_obs, i)[:, 0]
            if allowed is not None:
                logits = logits.masked_fill(~allowed(i, tokens[-1] if tokens else None),
                                            float("-inf"))
            tok, p = pick_tokens(logits, sample, temperature, generator)
            tokens.append(tok)
            probs.append(p)
            if stop_token is not None:
                ended |= tok == stop_token
                if bool(ended.all()):
                    break
            if use_cache and i < n - 1:
                h, cache = self._trunk(self._embed_tokens(tok[:, None], first=i), cache)
        for _ in range(n - len(tokens)):  # every row ended early
            tokens.append(torch.full_like(tokens[0], stop_token))
            probs.append(F.one_hot(tokens[-1], self.cfg.vocab_size).to(probs[0].dtype))
        return torch.stack(tokens, dim=1), torch.stack(probs, dim=1)
