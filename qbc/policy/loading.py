"""Policy checkpoints: a directory of safetensors weights and JSON, nothing executable.

::

    model.safetensors   the module's weights
    config.json         {"format", "version", "kind", "model": module config, "env_id",
                         "train": run config}
    tokenizer.json      the fitted ActionTokenizer (token policies only)
    normalizer.json     observation (and action) mean / std of the training split

config.json also records the sha256 of model.safetensors and tokenizer.json ("sha256"); loading
checks them, so a bit flip or a file copied in from elsewhere is refused (CorruptFileError).

Every file is written atomically (temp file + rename).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn.modules.module import register_module_parameter_registration_hook

from qbc.chunking import ChunkTokenizer
from qbc.errors import CorruptFileError, QbcError
from qbc.infra.files import atomic_write, atomic_write_json, read_json_object, sha256_file
from qbc.policy.chunked import ChunkPolicy, chunk_token_layout
from qbc.policy.registry import module_from_config
from qbc.policy.wrapper import Normalizer, Policy
from qbc.ste import quantize_linear_layers
from qbc.tokenizer import ActionTokenizer

FORMAT = "qbc.policy"
FORMAT_VERSION = 1
#: Files whose sha256 config.json records and loading checks.
HASHED = ("model.safetensors", "tokenizer.json")


def save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor]) -> Path:
    """Write tensors as safetensors, atomically."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    return atomic_write(path, lambda p: save_file(tensors, str(p)))


def load_tensors(path: str | os.PathLike, what: str = "weights file") -> dict[str, torch.Tensor]:
    """Read a safetensors file; a missing or damaged one raises CorruptFileError."""
    path = Path(path)
    if not path.is_file():
        raise CorruptFileError(f"{what} {str(path)!r} does not exist")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CorruptFileError(f"{what} {str(path)!r} is damaged ({exc}); re-create it") from None


def save_checkpoint(directory: str | os.PathLike, module: nn.Module, normalizer: Normalizer,
                    tokenizer: ActionTokenizer | None = None,
                    train_config: dict[str, Any] | None = None,
                    env_id: str | None = None) -> Path:
    """Write a policy checkpoint directory (see the module docstring); returns it.
    ``env_id`` is the Gymnasium id of the env the training data came from, if known."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_tensors(directory / "model.safetensors", module.state_dict())
    if tokenizer is not None:
        tokenizer.save(directory / "tokenizer.json")
    atomic_write_json(directory / "normalizer.json", normalizer.to_dict())
    hashes = {name: sha256_file(directory / name) for name in HASHED
              if name != "tokenizer.json" or tokenizer is not None}
    # config.json last: a directory with a config.json is complete.
    atomic_write_json(directory / "config.json", {
        "format": FORMAT, "version": FORMAT_VERSION, "kind": module.kind,
        "model": module.config_dict(), "env_id": env_id, "train": train_config,
        "sha256": hashes})
    return directory


def verify_file(directory: Path, name: str, cfg: dict[str, Any]) -> None:
    """Raise CorruptFileError unless ``directory / name`` has the sha256 recorded in its
    config.json (checkpoints written before hashes were recorded are not checked)."""
    hashes = cfg.get("sha256") or {}
    if not isinstance(hashes, dict):
        raise CorruptFileError(f"{directory / 'config.json'}: 'sha256' is not an object")
    expected = hashes.get(name)
    if expected is None:
        return
    path = directory / name
    if not path.is_file():
        raise CorruptFileError(f"{str(path)!r} does not exist; re-create the checkpoint")
    if sha256_file(path) != expected:
        raise CorruptFileError(
            f"{str(path)!r} is damaged or was replaced: its sha256 differs from the one recorded "
            "in config.json; re-create it (train again) or restore the original file")


def load_parts(directory: str | os.PathLike, loaded: tuple[nn.Module, dict[str, Any]] | None = None
               ) -> tuple[nn.Module, dict[str, Any], Normalizer, ActionTokenizer | None]:
    """Module (with its weights), config.json, normalizer and tokenizer of a checkpoint
    directory, each file checked against its recorded hash and the parts against each other.
    ``loaded``: the (module, config) :func:`load_module` already gave for this directory."""
    directory = Path(directory)
    module, cfg = loaded if loaded is not None else load_module(directory)
    path = directory / "normalizer.json"
    try:
        normalizer = Normalizer.from_dict(read_json_object(path, what="normalizer"))
    except CorruptFileError as exc:  # the numbers: name the file they came from
        raise CorruptFileError(exc.args[0] if str(path) in str(exc)
                               else f"normalizer {str(path)!r}: {exc}") from None
    tokenizer = None
    if module.is_token_policy:
        tokenizer = ActionTokenizer.load(directory / "tokenizer.json")
    check_parts(directory, module, normalizer, tokenizer)  # says more than a hash, so first
    if tokenizer is not None:
        verify_file(directory, "tokenizer.json", cfg)
    return module, cfg, normalizer, tokenizer


def resolve_checkpoint_dir(path: str | os.PathLike) -> Path:
    """A checkpoint directory, or a run directory holding ``best/`` (preferred) or ``last/``."""
    path = Path(path)
    if (path / "config.json").is_file():
        return path
    for sub in ("best", "last"):
        if (path / sub / "config.json").is_file():
            return path / sub
    raise CorruptFileError(
        f"{str(path)!r} is not a policy checkpoint (no config.json in it, nor in best/ or last/)")


def load_module(directory: str | os.PathLike) -> tuple[nn.Module, dict[str, Any]]:
    """The module of a checkpoint directory with its weights, and the stored config.json."""
    directory = Path(directory)
    cfg = read_json_object(directory / "config.json", what="policy config")
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
        raise CorruptFileError(f"{directory / 'config.json'} is not a qbc policy config")
    version = cfg.get("version")  # an int, not a bool (True == 1)
    if type(version) is not int or version != FORMAT_VERSION:
        raise CorruptFileError(f"{directory / 'config.json'}: policy format version "
                               f"{cfg.get('version')!r} is not supported (this qbc reads "
                               f"version {FORMAT_VERSION})")
    verify_file(directory, "model.safetensors", cfg)
    stored = _stored_shapes(directory / "model.safetensors")
    sizes = _fitted_codebooks(_shapes_described(directory, cfg, len(stored)), stored)
    if sizes != stored:
        raise CorruptFileError(
            f"{directory / 'model.safetensors'} does not fit the model in config.json "
            f"({_first_difference(sizes, stored)}); the config was edited or belongs to other "
            "weights: re-create the checkpoint")
    module = _module(directory, cfg)
    state = load_tensors(directory / "model.safetensors")
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise CorruptFileError(f"{directory / 'model.safetensors'} does not fit the model in "
                               f"config.json ({first})") from None
    return module, cfg


def _shapes_described(directory: Path, cfg: dict[str, Any], n_stored: int
                      ) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape of the module config.json describes, built without memory (torch's
    meta device), so a config describing a model other than the weights (sizes edited, huge or
    negative) is refused before anything is allocated. The build stops as soon as it has made
    far more parameters than the ``n_stored`` tensors of the weights file: a config whose layer
    count was made huge would otherwise make its layers one by one (minutes and GBs for 10^5).

    A config that built once is not built again (a meta build costs several times a real one,
    and DAgger rounds, sweeps and resumed runs load the same model config over and over): the
    shapes of the last successful builds are kept, keyed by what the build reads; a refusal is
    not kept, so it is raised afresh, naming its own file."""
    train = cfg.get("train")  # any value: a wrong one is the build's to refuse, with its words
    weight_quantizer = train.get("weight_quantizer") if isinstance(train, dict) else repr(train)
    key = json.dumps([cfg.get("kind"), cfg.get("model"), weight_quantizer, n_stored],
                     sort_keys=True, default=repr)
    with _BUILT_SHAPES_LOCK:
        shapes = _BUILT_SHAPES.get(key)
    if shapes is None:
        shapes = _meta_shapes(directory, cfg, n_stored)
        with _BUILT_SHAPES_LOCK:
            if len(_BUILT_SHAPES) >= _BUILT_SHAPES_KEPT:
                _BUILT_SHAPES.pop(next(iter(_BUILT_SHAPES)))
            _BUILT_SHAPES[key] = shapes
    return dict(shapes)


#: model config (as :func:`_shapes_described` keys it) -> its tensor shapes, oldest first
_BUILT_SHAPES: dict[str, dict[str, tuple[int, ...]]] = {}
_BUILT_SHAPES_KEPT = 32
_BUILT_SHAPES_LOCK = threading.Lock()


def _meta_shapes(directory: Path, cfg: dict[str, Any], n_stored: int
                 ) -> dict[str, tuple[int, ...]]:
    """:func:`_shapes_described`'s build on the meta device, with its parameter-count guard."""
    limit, made, builder = 2 * n_stored + 16, 0, threading.get_ident()

    def count(module: nn.Module, name: str, param: Any) -> None:
        nonlocal made
        if threading.get_ident() == builder:  # the hook is process-wide: count this build only
            made += 1
            if made > limit:
                raise CorruptFileError(
                    f"it describes a model with more than {limit} parameter tensors, and "
                    f"{directory / 'model.safetensors'} holds {n_stored}; the config was edited "
                    "or belongs to other weights: re-create the checkpoint")

    handle = register_module_parameter_registration_hook(count)
    try:
        with torch.device("meta"):
            return {k: tuple(v.shape) for k, v in _module(directory, cfg).state_dict().items()}
    finally:
        handle.remove()


def _module(directory: Path, cfg: dict[str, Any]) -> nn.Module:
    """The module ``config.json`` describes (weights not loaded); any failure to build it from
    the stored values is a CorruptFileError naming the file."""
    try:
        module = module_from_config(cfg["kind"], cfg["model"])
        weight_quantizer = (cfg.get("train") or {}).get("weight_quantizer")
        if weight_quantizer:  # trained with quantized weights: rebuild the same layers

            quantize_linear_layers(module, weight_quantizer)
    except QbcError as exc:
        raise CorruptFileError(f"{directory / 'config.json'}: {exc}") from None
    except Exception as exc:  # noqa: BLE001  (torch refusing sizes, wrong types, ...)
        raise CorruptFileError(f"{directory / 'config.json'} is incomplete or holds values of "
                               f"the wrong type or size ({type(exc).__name__}: {exc})") from None
    return module


def _stored_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape of a safetensors file, from its header (nothing is loaded)."""
    from safetensors import safe_open

    if not path.is_file():
        raise CorruptFileError(f"weights file {str(path)!r} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as exc:  # noqa: BLE001  (safetensors raises several kinds on a bad file)
        raise CorruptFileError(f"weights file {str(path)!r} is damaged "
                               f"({type(exc).__name__}: {exc}); re-create it") from None


def _fitted_codebooks(sizes: dict[str, tuple[int, ...]], stored: dict[str, tuple[int, ...]]
                      ) -> dict[str, tuple[int, ...]]:
    """``sizes`` with the empty codebook of each data-fitted weight quantizer
    (``--weight-quantizer uniform``, ...) given its stored 1-D size: it is fitted on the weights
    during training, so config.json cannot say its size (the module takes the stored one)."""
    return {k: stored[k] if (k.endswith("weight_quantizer.codebook") and v == (0,)
                             and len(stored.get(k, ())) == 1) else v
            for k, v in sizes.items()}


def _first_difference(a: dict[str, tuple], b: dict[str, tuple]) -> str:
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            return f"{key}: config {a.get(key)}, weights {b.get(key)}"
    return "none"


def load_policy(path: str | os.PathLike, device: str | torch.device = "cpu",
                decode_mode: str = "argmax") -> Policy:
    """Load a saved policy: ``act(obs (B, obs_dim), deterministic=True, generator=None)``.

    ``path`` is a checkpoint directory or a training run directory (its ``best/`` is used).
    Missing or damaged files raise :class:`~qbc.errors.CorruptFileError`.
    """
    directory = resolve_checkpoint_dir(path)
    module, cfg = load_module(directory)
    if getattr(module, "is_chunk_policy", False):
        return load_chunk_policy(directory, module, cfg, device, decode_mode)
    module, cfg, normalizer, tokenizer = load_parts(directory, loaded=(module, cfg))
    return Policy(module, normalizer, tokenizer, decode_mode=decode_mode, device=device,
                  env_id=cfg.get("env_id"))


def check_parts(directory: str | os.PathLike, module: nn.Module, normalizer: Normalizer,
                tokenizer: ActionTokenizer | None) -> None:
    """Raise CorruptFileError unless the weights, normalizer and tokenizer of a checkpoint
    describe the same policy (same observation size, action size, vocabulary and token count),
    e.g. after a tokenizer.json from another run was copied in."""
    directory = Path(directory)
    cfg = module.cfg
    problems = []
    if len(normalizer.obs_mean) != cfg.obs_dim:
        problems.append(f"normalizer.json is for {len(normalizer.obs_mean)}-dimensional "
                        f"observations, the model for {cfg.obs_dim}")
    if tokenizer is not None:
        n_tokens = getattr(cfg, "n_tokens", getattr(cfg, "out_dim", None))
        if tokenizer.vocab_size != cfg.vocab_size or tokenizer.n_tokens != n_tokens:
            problems.append(f"tokenizer.json has {tokenizer.n_tokens} tokens of vocabulary "
                            f"{tokenizer.vocab_size}, the model predicts {n_tokens} tokens of "
                            f"vocabulary {cfg.vocab_size}")
        elif tokenizer.action_dim_ != len(normalizer.act_mean):
            problems.append(f"tokenizer.json is for {tokenizer.action_dim_}-dimensional actions, "
                            f"normalizer.json for {len(normalizer.act_mean)}")
    if problems:
        raise CorruptFileError(
            f"the files of checkpoint {str(directory)!r} do not belong together: "
            + "; ".join(problems) + ". Use the tokenizer.json and normalizer.json saved with "
            "these weights (or train again)")


def load_chunk_policy(directory: str | Path, module: torch.nn.Module, cfg: dict[str, Any],
                      device: str | torch.device = "cpu", decode_mode: str = "argmax"
                      ) -> ChunkPolicy:
    """The ChunkPolicy of a checkpoint directory whose module ``load_module`` has rebuilt."""
    directory = Path(directory)
    normalizer = Normalizer.from_dict(read_json_object(directory / "normalizer.json",
                                                       what="normalizer"))
    tokenizer = None
    if module.is_token_policy:
        tokenizer = ChunkTokenizer.load(directory / "tokenizer.json")
        n, vocab, end = chunk_token_layout(tokenizer, module.cfg.n_tokens - 1)
        if (vocab, end) != (module.cfg.vocab_size, module.cfg.end_token) or (
                end is None and n != module.cfg.n_tokens) or (
                tokenizer.chunk_len_ != module.cfg.chunk_len):
            raise CorruptFileError(
                f"{directory / 'tokenizer.json'} and {directory / 'config.json'} describe "
                f"different policies (tokenizer: {n} tokens of vocabulary {vocab}, chunks of "
                f"{tokenizer.chunk_len_}; config: {module.cfg.n_tokens} tokens of vocabulary "
                f"{module.cfg.vocab_size}, chunk_len {module.cfg.chunk_len}); use the files of "
                "one run")
        verify_file(directory, "tokenizer.json", cfg)  # an edit of the same shapes, too
    if len(normalizer.obs_mean) != module.cfg.obs_dim:
        raise CorruptFileError(f"{directory / 'normalizer.json'} is for another observation size")
    return ChunkPolicy(module, normalizer, tokenizer, decode_mode=decode_mode, device=device,
                       env_id=cfg.get("env_id"))
