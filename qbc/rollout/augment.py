"""Model-based augmentation (Cao & Xie, Algorithm 1 / Theorem 7).

A :class:`TransitionModel` learns the next state from (state, action token) on expert data by
log-loss: a Gaussian head (default), or next-state tokens (``head="tokens"``: each state
dimension's increment tokenized by an :class:`~qbc.tokenizer.ActionTokenizer`, a categorical
distribution per dimension, trained on smooth binning's two-hot targets). It sees the *quantized*
action but is trained on the next state that the *raw* expert action produced, so rolling it
forward follows the expert's state law.

:class:`ModelAugmentedPolicy` deploys a token policy on an auxiliary state x̂: x̂_0 is the real
initial state, the policy acts on x̂, its decoded action goes to the real system, and x̂ advances
by the model: by its mean by default (a reconstruction of ours; Algorithm 1 samples x̂_{t+1},
offered as ``sample=True``). The paper's argument (Theorem 7): the policy is only ever queried on
states like the expert's, so it needs no smoothness, and exponential stability keeps the real
state close to x̂. An optional re-sync period k, also ours (not in Algorithm 1), resets x̂ to the
observed state every k steps (k = 1 is the plain policy).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import torch
from torch import nn

from qbc.errors import CorruptFileError, InvalidValueError
from qbc.infra.environ import scoped_torch_rng
from qbc.infra.files import atomic_write, atomic_write_json, read_json_object
from qbc.infra.progress import progress_bar
from qbc.tokenizer import ActionTokenizer

MODEL_FILE = "transition.safetensors"
CONFIG_FILE = "transition.json"
#: The version of ``transition.json`` this qbc writes and reads.
FORMAT_VERSION = 1


@dataclass
class TransitionModelConfig:
    """Size and training of the transition model."""

    head: str = "gaussian"
    """'gaussian': mean and log-std of the state increment; 'tokens': a categorical
    distribution over the tokens of each dimension's increment (next-state tokens)."""
    state_bins: int = 64
    """tokens per state dimension (head 'tokens')."""
    state_quantizer: str = "smooth"
    """registry quantizer of the increments (head 'tokens'; 'smooth' trains on two-hot targets,
    whose expected codeword is the increment itself, so the predicted mean is not rounded)."""
    min_log_std: float = -4.0
    """floor of the Gaussian head's log-std, in units of the increment's std (e^-4 = 1.8%). On
    (near-)deterministic transitions the likelihood has no maximum (the std runs to zero); a floor
    keeps the log-loss bounded and its curvature in the mean at most e^8, without which training
    is erratic (on qbc/Arctan-v0 the mean's error near the origin varied 400-fold with the seed at
    a floor of -7). Real process noise above the floor is learned as before."""
    hidden: int = 128
    """width of the MLP."""
    layers: int = 2
    """hidden layers of the MLP."""
    token_embedding: int = 0
    """size of a learned embedding of each action token (0: none, the codeword alone; an
    embedding per token adds variance on noisy data: each token's own bias is estimated from the
    few transitions that used it)."""
    steps: int = 3000
    """optimiser steps."""
    batch_size: int = 512
    """transitions per step."""
    lr: float = 3e-3
    """AdamW learning rate (cosine-decayed to 0)."""
    seed: int = 0
    """seed of the initialisation and of the batches."""


#: The transition model's outputs (``--transition-head``).
TransitionHead = Literal["gaussian", "tokens"]
HEADS = get_args(TransitionHead)


class TransitionModel(nn.Module):
    """Next-state model p(x_{t+1} | x_t, tokens of u_t).

    Inputs: the normalised state, the normalised codewords of the tokens, and optionally a learned
    embedding of each token. The target is the normalised state increment
    z = (x_{t+1} − x_t − delta_mean) / delta_std. A linear path plus an MLP give, per state
    dimension, the mean and log-std of z (head 'gaussian'; exact for linear dynamics in principle)
    or logits over the ``state_bins`` codewords of z (head 'tokens', codewords in
    ``state_codebooks`` (obs_dim, state_bins)).
    """

    def __init__(self, obs_dim: int, act_dim: int, n_tokens: int, vocab_size: int,
                 cfg: TransitionModelConfig, joint: bool = False):
        super().__init__()
        self.obs_dim, self.act_dim, self.n_tokens, self.vocab_size = (obs_dim, act_dim,
                                                                      n_tokens, vocab_size)
        self.cfg, self.joint = cfg, joint
        if cfg.head not in HEADS:
            raise InvalidValueError(f"transition model head must be one of {HEADS}, "
                                    f"got {cfg.head!r}")
        if not -20.0 <= cfg.min_log_std < 3.0:
            raise InvalidValueError(f"min_log_std must lie in [-20, 3), got {cfg.min_log_std}")
        if cfg.head == "tokens" and cfg.state_bins < 2:
            raise InvalidValueError(f"state_bins must be >= 2, got {cfg.state_bins}")
        tokens_head = cfg.head == "tokens"
        self.token_embedding = (nn.Embedding(n_tokens * vocab_size, cfg.token_embedding)
                                if cfg.token_embedding > 0 else None)
        n_in = obs_dim + act_dim + n_tokens * cfg.token_embedding
        layers: list[nn.Module] = []
        width = n_in
        for _ in range(cfg.layers):
            layers += [nn.Linear(width, cfg.hidden), nn.GELU()]
            width = cfg.hidden
        n_out = obs_dim * cfg.state_bins if tokens_head else obs_dim  # logits, or the mean
        self.mlp = nn.Sequential(*layers, nn.Linear(width, n_out if tokens_head else 2 * obs_dim))
        self.linear = nn.Linear(n_in, n_out)
        for name in ("obs_mean", "obs_std", "act_mean", "act_std", "delta_mean", "delta_std"):
            dim = act_dim if name.startswith("act") else obs_dim
            self.register_buffer(name, torch.zeros(dim) if "mean" in name else torch.ones(dim))
        # Codewords of the tokenizer: (K, D) for a joint one, (D, K) per dimension.
        self.register_buffer("codebooks", torch.zeros((vocab_size, act_dim) if joint
                                                      else (act_dim, vocab_size)))
        if tokens_head:
            self.register_buffer("state_codebooks", torch.zeros(obs_dim, cfg.state_bins))

    def set_statistics(self, obs: np.ndarray, actions: np.ndarray, next_obs: np.ndarray,
                       codebooks: np.ndarray) -> None:
        """Normalisation from training data (N, ·) and the tokenizer's codebooks."""
        def mean_std(x):
            x = np.asarray(x, dtype=np.float64)
            std = x.std(axis=0)
            return (torch.tensor(x.mean(axis=0), dtype=torch.float32),
                    torch.tensor(np.where(std > 1e-8, std, 1.0), dtype=torch.float32))
        self.obs_mean, self.obs_std = mean_std(obs)
        self.act_mean, self.act_std = mean_std(actions)
        self.delta_mean, self.delta_std = mean_std(np.asarray(next_obs) - np.asarray(obs))
        self.codebooks = torch.tensor(np.asarray(codebooks), dtype=torch.float32)

    def increments(self, obs: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
        """The normalised increments z (N, obs_dim) the model predicts."""
        z = (np.asarray(next_obs, np.float64) - np.asarray(obs, np.float64)
             - self.delta_mean.double().numpy()) / self.delta_std.double().numpy()
        return z.astype(np.float32)

    def _features(self, obs: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        if self.joint:
            actions = self.codebooks[tokens[:, 0]]
        else:
            actions = self.codebooks[torch.arange(self.act_dim), tokens]
        parts = [(obs - self.obs_mean) / self.obs_std, (actions - self.act_mean) / self.act_std]
        if self.token_embedding is not None:
            offsets = torch.arange(self.n_tokens, device=tokens.device) * self.vocab_size
            parts.append(self.token_embedding(tokens + offsets).flatten(1))
        return torch.cat(parts, dim=1)

    def forward(self, obs: torch.Tensor, tokens: torch.Tensor) -> Any:
        """Head 'gaussian': the normalised increment's mean and log-std, each (B, obs_dim).
        Head 'tokens': logits (B, obs_dim, state_bins) over its codewords."""
        z = self._features(obs, tokens)
        if self.cfg.head == "tokens":
            return (self.linear(z) + self.mlp(z)).view(-1, self.obs_dim, self.cfg.state_bins)
        mean_mlp, log_std = self.mlp(z).chunk(2, dim=1)
        return self.linear(z) + mean_mlp, log_std.clamp(self.cfg.min_log_std, 3.0)

    def nll(self, obs: torch.Tensor, tokens: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Log-loss per transition (nats, summed over state dimensions, mean over the batch).

        ``target``: head 'gaussian', the normalised increments (B, obs_dim) (Gaussian negative
        log-likelihood); head 'tokens', target distributions (B, obs_dim, state_bins) over the
        increment's tokens (cross-entropy)."""
        if self.cfg.head == "tokens":
            logp = torch.log_softmax(self(obs, tokens), dim=-1)
            return -(target * logp).sum((1, 2)).mean()
        mean, log_std = self(obs, tokens)
        return (0.5 * ((target - mean) / log_std.exp()) ** 2 + log_std).sum(1).mean() \
            + 0.5 * self.obs_dim * np.log(2 * np.pi)

    @torch.no_grad()
    def predict(self, obs: np.ndarray, tokens: np.ndarray, sample: bool = False,
                generator: torch.Generator | None = None) -> np.ndarray:
        """Next states (B, obs_dim) float32: the mean, or a draw when ``sample`` (head 'tokens':
        a token per dimension, its codeword)."""
        x = torch.as_tensor(np.asarray(obs, dtype=np.float32))
        tok = torch.as_tensor(np.asarray(tokens, dtype=np.int64))
        if self.cfg.head == "tokens":
            probs = torch.softmax(self(x, tok), dim=-1)  # (B, obs_dim, state_bins)
            if sample:
                flat = probs.reshape(-1, self.cfg.state_bins)
                drawn = torch.multinomial(flat, 1, generator=generator).view(probs.shape[:2])
                z = self.state_codebooks[torch.arange(self.obs_dim), drawn]
            else:
                z = (probs * self.state_codebooks).sum(-1)
        else:
            z, log_std = self(x, tok)
            if sample:
                z = z + log_std.exp() * torch.randn(z.shape, generator=generator)
        return (x + self.delta_mean + z * self.delta_std).numpy().astype(np.float32)


@scoped_torch_rng()  # seeds torch for its own initialisation; the caller's random state is kept
def fit_transition_model(observations: np.ndarray, actions: np.ndarray,
                         next_observations: np.ndarray, tokenizer: Any,
                         cfg: TransitionModelConfig | None = None,
                         progress: bool = True) -> TransitionModel:
    """Train a :class:`TransitionModel` on expert transitions (N, ·) by log-loss.

    The tokens are the tokenizer's encoding of the expert's actions (stochastic rounding for a
    smooth tokenizer, so the model sees every token the policy may emit). With head 'tokens' the
    increments are tokenized by an ActionTokenizer (``cfg.state_quantizer``, ``cfg.state_bins``
    per dimension) fitted on the training increments.
    """
    cfg = cfg or TransitionModelConfig()
    obs = np.asarray(observations, dtype=np.float32)
    nxt = np.asarray(next_observations, dtype=np.float32)
    if len(obs) < 2 or obs.shape != nxt.shape:
        raise InvalidValueError(
            f"need at least 2 transitions with matching shapes, got {obs.shape} and {nxt.shape}"
        )
    rng = np.random.default_rng(cfg.seed)
    tokens = tokenizer.encode(actions, rng=rng if tokenizer.stochastic else None)
    torch.manual_seed(cfg.seed)
    model = TransitionModel(obs.shape[1], tokenizer.action_dim_, tokenizer.n_tokens,
                            tokenizer.vocab_size, cfg, joint=tokenizer.is_joint)
    model.set_statistics(obs, actions, nxt, tokenizer.codebooks())
    increments = model.increments(obs, nxt)
    targets = _increment_targets(model, increments)
    t_obs, t_tok = torch.as_tensor(obs), torch.as_tensor(tokens)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.steps)
    gen = torch.Generator().manual_seed(cfg.seed)
    bar = progress_bar(range(cfg.steps), desc="transition model", disable=not progress, leave=False)
    for _ in bar:
        idx = torch.randint(0, len(obs), (min(cfg.batch_size, len(obs)),), generator=gen)
        loss = model.nll(t_obs[idx], t_tok[idx], targets(idx))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        bar.set_postfix(nll=f"{loss.item():.3f}", refresh=False)
    return model.eval()


def _increment_targets(model: TransitionModel, increments: np.ndarray):
    """idx (B,) -> the training targets of those transitions for ``model.nll``: the increments
    themselves (Gaussian head), or their token distributions (token head; made per batch, since
    all of them at once take N * obs_dim * state_bins floats)."""
    if model.cfg.head == "gaussian":
        z = torch.as_tensor(increments)
        return lambda idx: z[idx]

    state_tok = ActionTokenizer.fit(increments, quantizer=model.cfg.state_quantizer,
                                    n_bins=model.cfg.state_bins)
    if state_tok.vocab_size != model.cfg.state_bins:
        raise InvalidValueError(f"state quantizer {model.cfg.state_quantizer!r} gives "
                                f"{state_tok.vocab_size} tokens, not state_bins")
    model.state_codebooks = torch.as_tensor(state_tok.codebooks())
    if state_tok.stochastic:
        return lambda idx: torch.as_tensor(state_tok.soft_targets(increments[idx.numpy()]))
    eye = torch.eye(model.cfg.state_bins)
    tokens = torch.as_tensor(state_tok.encode(increments))
    return lambda idx: eye[tokens[idx]]


def save_transition_model(model: TransitionModel, directory: str | os.PathLike) -> Path:
    """Write ``transition.safetensors`` + ``transition.json`` into ``directory`` atomically."""
    from safetensors.torch import save_file

    directory = Path(directory)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    atomic_write(directory / MODEL_FILE, lambda p: save_file(state, str(p)))
    atomic_write_json(directory / CONFIG_FILE, {
        "format": "qbc.transition_model", "version": FORMAT_VERSION, "config": asdict(model.cfg),
        "obs_dim": model.obs_dim, "act_dim": model.act_dim, "n_tokens": model.n_tokens,
        "vocab_size": model.vocab_size, "joint": model.joint,
    })
    return directory


def load_transition_model(directory: str | os.PathLike) -> TransitionModel:
    """Load a model saved by :func:`save_transition_model` (no pickle involved)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    meta = read_json_object(directory / CONFIG_FILE, what="transition model config")
    if meta.get("format") != "qbc.transition_model":
        raise CorruptFileError(f"{directory / CONFIG_FILE} is not a qbc transition model")
    if type(meta.get("version")) is not int or meta["version"] != FORMAT_VERSION:  # not True
        raise CorruptFileError(
            f"{directory / CONFIG_FILE}: transition model format version {meta.get('version')!r} "
            f"is not supported (this qbc reads version {FORMAT_VERSION})")
    try:
        args = (meta["obs_dim"], meta["act_dim"], meta["n_tokens"], meta["vocab_size"],
                TransitionModelConfig(**meta["config"]))
        _check_sizes(meta, _stored_shapes(directory / MODEL_FILE))
        with torch.device("meta"):  # the shapes the description implies, nothing allocated
            shapes = {k: tuple(v.shape) for k, v in
                      TransitionModel(*args, joint=meta["joint"]).state_dict().items()}
        if shapes != _stored_shapes(directory / MODEL_FILE):
            raise ValueError(f"{CONFIG_FILE} describes other tensors than {MODEL_FILE} holds")
        model = TransitionModel(*args, joint=meta["joint"])
        model.load_state_dict(load_file(str(directory / MODEL_FILE)))
    except (KeyError, TypeError, ValueError, RuntimeError, SafetensorError, OSError,
            OverflowError) as exc:
        why = str(exc).splitlines()[0] if str(exc) else repr(exc)
        raise CorruptFileError(f"transition model in {directory} cannot be loaded: "
                               f"{why}") from None
    return model.eval()


def _stored_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape of a safetensors file, from its header alone."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}


def _check_sizes(meta: dict[str, Any], stored: dict[str, tuple[int, ...]]) -> None:
    """ValueError unless the description's sizes are integers no larger than the weights file
    can hold (so that a damaged description cannot build a model of a million layers) and its
    token count fits its tokenizer (one token per action, or per dimension)."""
    cfg = meta["config"]
    sizes = {"obs_dim": meta["obs_dim"], "act_dim": meta["act_dim"],
             "vocab_size": meta["vocab_size"], "n_tokens": meta["n_tokens"],
             "hidden": cfg.get("hidden"), "layers": cfg.get("layers"),
             "token_embedding": cfg.get("token_embedding")}
    if cfg.get("head") == "tokens":  # the gaussian head has no state codebooks
        sizes["state_bins"] = cfg.get("state_bins")
    largest = max((d for shape in stored.values() for d in shape), default=0)
    for name, value in sizes.items():
        if type(value) is not int or not 0 <= value <= max(largest, len(stored)):
            raise ValueError(f"{name} {value!r} is not a size the weights file can hold")
    if type(meta["joint"]) is not bool or meta["n_tokens"] != (
            1 if meta["joint"] else meta["act_dim"]):
        raise ValueError(f"n_tokens {meta['n_tokens']} does not fit act_dim "
                         f"{meta['act_dim']} (joint: {meta['joint']!r})")


class ModelAugmentedPolicy:
    """Algorithm 1: act on an auxiliary state advanced by a transition model (by its mean unless
    ``sample``: the algorithm samples; ``resync_every`` is not part of it).

    Args:
        policy: a token policy with ``tokenizer`` and ``act_tokens(obs (B, obs_dim)) -> tokens
            (B, n_tokens)``.
        model: anything with ``predict(obs, tokens, sample=..., generator=...) -> next obs``.
        resync_every: reset x̂ to the observed state every k steps (0 or None: never; 1: the
            plain policy).
        sample: draw x̂_{t+1} from the model instead of taking its mean.
        seed: seed of the model's draws.
    """

    def __init__(self, policy: Any, model: Any, resync_every: int | None = None,
                 sample: bool = False, seed: int = 0):
        if not hasattr(policy, "act_tokens") or getattr(policy, "tokenizer", None) is None:
            raise InvalidValueError(
                "model-based deployment needs a token policy (ar-transformer, "
                "independent-categorical or a tokenized construction)"
            )
        if resync_every is not None and resync_every < 0:
            raise InvalidValueError(f"resync_every must be >= 0, got {resync_every}")
        self.policy, self.model = policy, model
        self.resync_every = resync_every or 0
        self.sample = sample
        self.generator = torch.Generator().manual_seed(seed)
        self.reset()

    @property
    def tokenizer(self) -> Any:
        return self.policy.tokenizer

    def reset(self) -> None:
        """Forget x̂: the next ``act`` starts from the state it is given."""
        self.x_hat: np.ndarray | None = None
        self.t = 0
        if hasattr(self.policy, "reset"):
            self.policy.reset()

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Real observations (B, obs_dim) -> actions (B, act_dim) for the real system."""
        obs = np.asarray(obs, dtype=np.float32)
        if self.x_hat is None or self.x_hat.shape != obs.shape or (
                self.resync_every and self.t % self.resync_every == 0):
            self.x_hat = obs.copy()
        tokens = self.policy.act_tokens(self.x_hat)
        actions = self.tokenizer.decode(tokens)
        self.x_hat = self.model.predict(self.x_hat, tokens, sample=self.sample,
                                        generator=self.generator)
        self.t += 1
        return actions
