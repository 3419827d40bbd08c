"""Actors without pickles: the deterministic policy of an SB3 model as safetensors + JSON.

An actor folder holds ``actor.safetensors`` (the MLP's weights, tensors ``layers.<i>.weight``
(out, in) and ``layers.<i>.bias`` (out,), float32) and ``actor.json`` (the architecture, the
spaces, the algorithm, how it was trained and its measured return). :class:`MLPActor` rebuilds
the deterministic action in numpy from those two files alone:

    h = act(W_i h + b_i) for the hidden layers, y = W_last h + b_last, then
    output "tanh_rescale" (SAC, TD3): low + (tanh(y) + 1) / 2 * (high - low)
    output "clip" (PPO's mean action):  clip(y, low, high)

which is what SB3's ``predict(obs, deterministic=True)`` computes for a flat Box observation
(no observation normalisation).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from qbc.errors import CorruptFileError, InvalidValueError
from qbc.infra.files import atomic_write, atomic_write_json, read_json, sha256_file

ACTOR_FORMAT = "qbc-actor"
ACTOR_VERSION = 1
WEIGHTS_FILE = "actor.safetensors"
META_FILE = "actor.json"

_ACTIVATIONS = {
    "relu": lambda x: np.maximum(x, 0.0),
    "tanh": np.tanh,
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0.0))),
    "leaky_relu": lambda x: np.where(x > 0, x, 0.01 * x),
}
_OUTPUTS = ("tanh_rescale", "clip")


class MLPActor:
    """The deterministic policy of an actor folder: ``predict(obs (B, obs_dim)) -> (B,
    act_dim)`` float32, inside the action bounds ``low``, ``high`` (act_dim,).

    ``weights``: [(W (out, in), b (out,)), ...] float32; ``meta``: the actor.json dict.
    """

    def __init__(self, weights: list[tuple[np.ndarray, np.ndarray]], meta: dict[str, Any]):
        self.weights = weights
        self.meta = meta
        self.activation = _ACTIVATIONS[meta["activation"]]
        self.output = meta["output"]
        space = meta["action_space"]
        self.low = np.asarray(space["low"], dtype=np.float32)
        self.high = np.asarray(space["high"], dtype=np.float32)
        self.obs_dim, self.act_dim = meta["layer_sizes"][0], meta["layer_sizes"][-1]

    def act(self, obs: np.ndarray) -> np.ndarray:
        """The :class:`qbc.stepping.actor.Actor` protocol: :meth:`predict`."""
        return self.predict(obs)

    def predict(self, obs: np.ndarray) -> np.ndarray:
        """Deterministic actions (B, act_dim) float32 for observations (B, obs_dim)."""
        h = np.asarray(obs, dtype=np.float32)
        if h.ndim != 2 or h.shape[1] != self.obs_dim:
            raise InvalidValueError(
                f"actor expects observations of shape (B, {self.obs_dim}), got {h.shape}")
        for i, (w, b) in enumerate(self.weights):
            h = h @ w.T + b
            if i < len(self.weights) - 1:
                h = self.activation(h)
        if self.output == "tanh_rescale":
            h = self.low + (np.tanh(h) + 1.0) * 0.5 * (self.high - self.low)
        return np.clip(h, self.low, self.high).astype(np.float32)

    @classmethod
    def load(cls, folder: str | Path) -> MLPActor:
        """Read an actor folder; a missing, damaged or inconsistent file raises
        CorruptFileError (one line, naming the file)."""
        folder = Path(folder)
        meta = read_actor_meta(folder)
        weights_path = folder / WEIGHTS_FILE
        if not weights_path.is_file():
            raise CorruptFileError(f"actor weights {str(weights_path)!r} do not exist")
        if meta.get("weights_sha256") not in (None, sha256_file(weights_path)):
            raise CorruptFileError(
                f"actor weights {str(weights_path)!r} do not match the SHA-256 in "
                f"{META_FILE} (damaged or replaced); export or download the actor again")
        try:
            from safetensors.numpy import load_file

            tensors = load_file(str(weights_path))
        except Exception as exc:  # safetensors raises several kinds on a bad file
            raise CorruptFileError(
                f"cannot read actor weights {str(weights_path)!r} ({type(exc).__name__}: "
                f"{exc}); export the actor again") from None
        return cls(_check_weights(tensors, meta, weights_path), meta)


def read_actor_meta(folder: str | Path) -> dict[str, Any]:
    """The checked actor.json of an actor folder (CorruptFileError when missing or damaged)."""
    path = Path(folder) / META_FILE
    if not path.is_file():
        raise CorruptFileError(f"actor description {str(path)!r} does not exist")
    meta = read_json(path, what="actor description")
    problem = _meta_problem(meta)
    if problem:
        raise CorruptFileError(f"actor description {str(path)!r} is damaged: {problem}")
    return meta


def _meta_problem(meta: Any) -> str | None:
    """What is wrong with an actor.json dict, or None."""
    if not isinstance(meta, dict) or meta.get("format") != ACTOR_FORMAT:
        return f"format is not {ACTOR_FORMAT!r}"
    version = meta.get("version")
    if not (type(version) is int and version == ACTOR_VERSION):
        return (f"version {version!r} is not supported (this qbc reads version "
                f"{ACTOR_VERSION}); export the actor again with this qbc")
    sizes = meta.get("layer_sizes")
    if not (isinstance(sizes, list) and len(sizes) >= 2
            and all(isinstance(s, int) and s > 0 for s in sizes)):
        return f"layer_sizes must be a list of >= 2 positive ints, got {sizes!r}"
    if not (isinstance(meta.get("activation"), str) and meta["activation"] in _ACTIVATIONS):
        return f"activation must be one of {sorted(_ACTIVATIONS)}, got {meta.get('activation')!r}"
    if not (isinstance(meta.get("output"), str) and meta["output"] in _OUTPUTS):
        return f"output must be one of {list(_OUTPUTS)}, got {meta.get('output')!r}"
    space = meta.get("action_space") or {}
    try:
        low = np.asarray(space["low"], dtype=np.float64)
        high = np.asarray(space["high"], dtype=np.float64)
    except (KeyError, TypeError, ValueError, OverflowError):  # (an int past float's range)
        return "action_space needs low and high lists of finite numbers"
    with np.errstate(over="ignore"):  # the actor acts in float32: bounds must be finite there
        finite = np.all(np.isfinite(low.astype(np.float32))) and np.all(
            np.isfinite(high.astype(np.float32)))
    if low.shape != (sizes[-1],) or high.shape != low.shape or not finite \
            or not np.all(low < high):
        return (f"action_space low/high must be finite float32 numbers, low < high, of length "
                f"{sizes[-1]}")
    return None


def _check_weights(tensors: dict[str, np.ndarray], meta: dict[str, Any],
                   path: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """[(W, b)] in layer order, checked against ``meta["layer_sizes"]``."""
    sizes = meta["layer_sizes"]
    expected = {f"layers.{i}.{p}" for i in range(len(sizes) - 1) for p in ("weight", "bias")}
    if set(tensors) != expected:
        raise CorruptFileError(
            f"actor weights {str(path)!r} hold tensors {sorted(tensors)}, expected "
            f"{sorted(expected)} for layer_sizes {sizes}")
    weights = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        w, b = tensors[f"layers.{i}.weight"], tensors[f"layers.{i}.bias"]
        if w.shape != (n_out, n_in) or b.shape != (n_out,):
            raise CorruptFileError(
                f"actor weights {str(path)!r}: layer {i} has shapes {w.shape}, {b.shape}, "
                f"expected {(n_out, n_in)}, {(n_out,)}")
        if not (np.all(np.isfinite(w)) and np.all(np.isfinite(b))):
            raise CorruptFileError(f"actor weights {str(path)!r}: layer {i} is not finite")
        weights.append((w.astype(np.float32), b.astype(np.float32)))
    return weights


# --- export from an SB3 model -------------------------------------------------------------


def _linears_and_activation(modules: list[Any]) -> tuple[list[Any], str]:
    """The Linear layers of a Sequential-like list and the one activation between them."""
    import torch.nn as nn

    names = {nn.ReLU: "relu", nn.Tanh: "tanh", nn.ELU: "elu", nn.LeakyReLU: "leaky_relu"}
    linears = [m for m in modules if isinstance(m, nn.Linear)]
    acts = {names.get(type(m), type(m).__name__) for m in modules if not isinstance(m, nn.Linear)}
    if len(acts) > 1 or not acts <= set(_ACTIVATIONS):
        raise InvalidValueError(f"cannot export an actor with activations {sorted(acts)}; "
                                f"supported: {sorted(_ACTIVATIONS)}")
    return linears, (acts.pop() if acts else "relu")


def sb3_actor_layers(model: Any, algo: str) -> tuple[list[Any], str, str]:
    """(Linear layers in order, hidden activation, output) of an SB3 model's deterministic
    policy: SAC latent_pi + mu, tanh; TD3 actor.mu (its final Tanh); PPO policy_net +
    action_net, clipped."""
    from stable_baselines3.common.torch_layers import FlattenExtractor

    policy = model.policy
    owner = policy.actor if algo in ("sac", "td3") else policy
    if not isinstance(getattr(owner, "features_extractor", None), FlattenExtractor):
        raise InvalidValueError("only MlpPolicy actors (a flat observation) can be exported")
    if algo == "sac":
        linears, act = _linears_and_activation(list(policy.actor.latent_pi))
        return linears + [policy.actor.mu], act, "tanh_rescale"
    if algo == "td3":
        modules = list(policy.actor.mu)
        linears, act = _linears_and_activation(modules[:-1])
        return linears, act, "tanh_rescale"
    if algo == "ppo":
        if policy.squash_output:
            raise InvalidValueError("cannot export a PPO policy with squash_output=True")
        linears, act = _linears_and_activation(list(policy.mlp_extractor.policy_net))
        return linears + [policy.action_net], act, "clip"
    raise InvalidValueError(f"cannot export algorithm {algo!r}; supported: sac, td3, ppo")


def _space_dict(space: Any) -> dict[str, Any]:
    low, high = np.asarray(space.low, np.float64), np.asarray(space.high, np.float64)
    # JSON has no infinity: unbounded observation coordinates are written as null.
    clean = lambda a: [float(v) if np.isfinite(v) else None for v in a.ravel()]  # noqa: E731
    return {"shape": list(space.shape), "low": clean(low), "high": clean(high)}


def save_sb3_actor(model: Any, algo: str, folder: str | Path,
                   info: dict[str, Any] | None = None) -> Path:
    """Write ``model``'s deterministic actor to ``folder`` (actor.safetensors + actor.json,
    each atomically); ``info`` (env_id, timesteps, seed, training_command, evaluation, ...)
    is added to the JSON. Returns the folder."""
    from safetensors.numpy import save_file

    if len(model.observation_space.shape) != 1 or len(model.action_space.shape) != 1:
        raise InvalidValueError("only flat (1-D) observation and action spaces can be exported")
    linears, activation, output = sb3_actor_layers(model, algo)
    tensors = {}
    for i, layer in enumerate(linears):
        tensors[f"layers.{i}.weight"] = layer.weight.detach().cpu().numpy().astype(np.float32)
        tensors[f"layers.{i}.bias"] = layer.bias.detach().cpu().numpy().astype(np.float32)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights = atomic_write(folder / WEIGHTS_FILE, lambda tmp: save_file(tensors, str(tmp)))
    meta = {
        "format": ACTOR_FORMAT, "version": ACTOR_VERSION, "algo": algo,
        "layer_sizes": [int(linears[0].in_features)] + [int(m.out_features) for m in linears],
        "activation": activation, "output": output,
        "observation_space": _space_dict(model.observation_space),
        "action_space": _space_dict(model.action_space),
        "weights_sha256": sha256_file(weights), **(info or {}),
    }
    atomic_write_json(folder / META_FILE, meta)
    return folder


def actor_size_bytes(folder: str | Path) -> int:
    """Bytes of an actor folder's two files."""
    return sum((Path(folder) / f).stat().st_size for f in (WEIGHTS_FILE, META_FILE))
