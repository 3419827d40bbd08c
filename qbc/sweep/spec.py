"""The sweep file: a TOML document read into dataclasses, every key checked.

A sweep file has four tables; every key is optional except ``grid.envs``::

    [grid]                      # the product of these lists is the set of cells
    envs = ["qbc/ScalarStable-v0", {name = "qbc/ScalarStable-v0", env_kwargs = {noise_std = 0.0}}]
    # an env table passes constructor keywords (e.g. the noise-free variant of a noisy env):
    # collection, expert, coupled rollout and chunk floor all make the env with them, and its
    # rows are labelled "qbc/ScalarStable-v0(noise_std=0.0)"
    experts = ["lqr", {name = "linear", params = {gain_scale = 0.8}}]
    # an expert table may name the envs it applies to: {name = "zoo:Pendulum-v1",
    # envs = ["Pendulum-v1"]}; without envs an expert applies to every env
    quantizers = ["uniform", "smooth"]
    bins = [16]
    n_demos = [50]
    seeds = [0, 1, 2]
    horizons = [10, 100, 500]   # not a grid axis: every cell reports one row per H
    # chunk policies only (see below):
    chunk_tokenizers = ["per-step", "fast", {name = "beast", params = {n_control_points = 4}}]
    chunk_lens = [1, 4, 16]
    executions = ["open-loop", "receding:1", "ensemble:0.1"]

    [data]                      # how demonstrations are collected (cached by content)
    [train]                     # policies = ["ar-transformer", "quantized-expert"], steps, ...
                                # (steps left out: qbc train's / train-chunked's data-scaled
                                # budget with early stopping, the resolved steps in results.csv)
    [rollout]                   # episodes, num_envs, seed, ...

Chunk policies (``chunk-ar-transformer``, ``chunk-mlp-l1`` in ``[train] policies``; trained by
:func:`qbc.training.chunked.train_chunked`) get their own cells: one per (env, expert, bins,
n_demos, seed) x chunk tokenizer x chunk length k for ``chunk-ar-transformer`` (``bins`` is the
tokenizer's ``--bins``; the ``quantizers`` axis does not apply), one per (env, expert, n_demos,
seed) x k for the continuous ``chunk-mlp-l1``. ``executions`` (names as ``--execute`` takes them,
:func:`qbc.chunking.execution.parse_execute`) is a rollout-time axis: each chunk policy is trained
once and rolled out once per execution mode (``receding:M`` needs M <= the smallest k; chunk
policies decode by ``argmax`` or ``sample``). Tokenizer parameters are numbers, strings or
booleans; defaults as ``qbc train-chunked`` (per-step uniform with ``bins`` bins, ...). Per-step
policies ignore the three chunk axes.

A scalar where a list is expected is read as a one-element list. Unknown keys are an
:class:`~qbc.errors.InvalidValueError` naming the key, the closest valid key and all valid keys.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qbc.agents import available_experts
from qbc.errors import InvalidValueError, UnknownNameError
from qbc.infra.files import read_toml, tomllib  # noqa: F401  (tomllib: the tests' parser)
from qbc.infra.validate import NON_NEGATIVE, Rule, check_config
from qbc.policy import ModelConfig, available_policies, chunk_policies
from qbc.policy.decoding import parse_decoding
from qbc.policy.registry import check_model_config
from qbc.quantizers import available_quantizers, get_quantizer_class
from qbc.quantizers.binning import QUANTILE_RANGE
from qbc.sweep.chunk_axes import check_chunks_fit_episodes, validate_chunk_axes
from qbc.sweep.entries import check_env_entries, check_keys, env_ids, normalize_named
from qbc.training.config import TOKEN_TARGETS

#: The policy name that means "no training: the expert's action through the tokenizer".
QUANTIZED_EXPERT = "quantized-expert"

#: Demonstrations of grid seed s are collected with episode seeds data.seed + s * SEED_STRIDE + k.
SEED_STRIDE = 1_000_000


@dataclass
class GridSpec:
    """The axes of the grid (their product is the set of cells) and the horizons of every cell."""

    envs: list[Any] = field(default_factory=list)
    """Gymnasium env ids, e.g. ["qbc/ScalarStable-v0", "qbc/ScalarUnstable-v0"], or tables
    {name = "qbc/ScalarStable-v0", env_kwargs = {noise_std = 0.0}} (constructor keywords)."""
    experts: list[Any] = field(default_factory=lambda: ["lqr"])
    """expert names, or tables {name = "linear", params = {gain_scale = 0.8}}."""
    quantizers: list[str] = field(default_factory=lambda: ["uniform"])
    """quantizer registry names (uniform, smooth, kmeans, lloyd_max, ...)."""
    bins: list[int] = field(default_factory=lambda: [16])
    """tokens per action dimension."""
    n_demos: list[int] = field(default_factory=lambda: [50])
    """number of expert demonstration episodes."""
    seeds: list[int] = field(default_factory=lambda: [0])
    """seeds of the data, the training and the smooth quantizer's rounding."""
    horizons: list[int] = field(default_factory=lambda: [10, 50, 200])
    """horizons H at which each cell reports its metrics (the rollout runs to the largest)."""
    chunk_tokenizers: list[Any] = field(default_factory=lambda: ["per-step"])
    """chunk-ar-transformer: chunk tokenizer names (qbc.chunking), or tables
    {name = "per-step", params = {quantizer = "uniform", n_bins = 64}}."""
    chunk_lens: list[int] = field(default_factory=lambda: [4])
    """chunk policies: actions per chunk k."""
    executions: list[str] = field(default_factory=lambda: ["open-loop"])
    """chunk policies: execution modes of the rollouts (open-loop, receding:M, ensemble:C)."""


@dataclass
class DataSpec:
    """How the demonstrations of a cell are collected."""

    seed: int = 0
    """base episode seed; grid seed s uses episode seeds seed + s * 1e6 + k."""
    episode_steps: int | None = None
    """steps per demonstration episode; default: the env's registered limit."""
    expert_noise: float = 0.0
    """std of Gaussian noise added to the expert's actions while collecting."""
    num_envs: int = 16
    """env copies stepped together while collecting (speed only)."""


@dataclass
class TrainSpec:
    """What is trained in every cell (see qbc.training.TrainConfig for the meaning of each knob)."""

    policies: list[str] = field(default_factory=lambda: ["ar-transformer"])
    """policy kinds, plus "quantized-expert" (no training: the expert through the tokenizer)."""
    steps: int | None = None
    """optimisation steps per trained policy; left out: the data-scaled budget of qbc train /
    qbc train-chunked (--epochs 30 passes, 10,000-200,000 steps) with early stopping."""
    batch_size: int = 256
    """samples per step."""
    lr: float = 1e-3
    """peak learning rate."""
    warmup_steps: int = 100
    """linear warm-up steps."""
    eval_interval: int = 500
    """steps between validation and checkpoints."""
    val_fraction: float = 0.1
    """fraction of episodes held out for validation."""
    per_dim: bool = True
    """one quantizer per action dimension."""
    quantile: float = 0.0
    """uniform/smooth: fit the range to the [q, 1-q] action quantiles."""
    token_target: str = "two-hot"
    """per-dimension tokenizers: 'two-hot' or 'one-hot' targets (qbc train --token-target;
    the earlier names 'soft' and 'sampled' reproduce runs made before the two-hot default)."""
    decode: str = "argmax"
    """the token policy's rollout decoding, as qbc rollout --decode: argmax, sample:T, mean."""
    select_by: str = "action-mse"
    """which checkpoint is kept: 'action-mse' (lowest validation action error) or 'val-loss'
    (lowest validation log-loss); see qbc train --select-by ('rollout' is not offered here)."""
    model: dict[str, Any] = field(default_factory=dict)
    """model settings (qbc.policy.ModelConfig fields), e.g. {d_model = 32, n_layers = 1}."""


@dataclass
class RolloutSpec:
    """The coupled evaluation rollouts of every cell."""

    episodes: int = 100
    """coupled episodes per cell."""
    num_envs: int = 100
    """episodes stepped together."""
    seed: int = 1_000_000_000
    """first evaluation episode seed (apart from the demonstrations' seeds)."""
    divergence_threshold: float = 1e3
    """state norm above which an episode counts as diverged."""


@dataclass
class SweepSpec:
    """A whole sweep file."""

    grid: GridSpec
    data: DataSpec = field(default_factory=DataSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    rollout: RolloutSpec = field(default_factory=RolloutSpec)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_TABLES = {"grid": GridSpec, "data": DataSpec, "train": TrainSpec, "rollout": RolloutSpec}
_LIST_FIELDS = {"envs", "experts", "quantizers", "bins", "n_demos", "seeds", "horizons",
                "policies", "chunk_tokenizers", "chunk_lens", "executions"}
_LIST_KINDS: dict[str, type] = {"envs": object, "quantizers": str, "policies": str,
                                "executions": str, "experts": object, "chunk_tokenizers": object}


def _type_ok(value: Any, kind: type) -> bool:
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _coerce(table: str, key: str, value: Any, default: Any, source: str) -> Any:
    """Check one value against the type of its default; scalars become one-element lists."""
    where = f"[{table}] {key} in {source}"
    if key in _LIST_FIELDS:
        items = value if isinstance(value, list) else [value]
        if not items:
            raise InvalidValueError(f"{where} is an empty list; give at least one value")
        kind = _LIST_KINDS.get(key, int)
        for item in items:
            if not _type_ok(item, kind):
                raise InvalidValueError(
                    f"{where}: {item!r} is not a{'n integer' if kind is int else ' string'}")
        if len(set(map(repr, items))) != len(items):
            raise InvalidValueError(f"{where} lists a value twice: {items!r}")
        return items
    if key == "model":
        if not isinstance(value, dict):
            raise InvalidValueError(f"{where} must be a table like {{d_model = 32}}")
        return dict(value)
    if key in ("episode_steps", "steps") and value is not None:
        kind: type = int
    elif isinstance(default, bool):
        kind = bool
    else:
        kind = type(default)
    if not _type_ok(value, kind):
        raise InvalidValueError(f"{where} must be of type {kind.__name__}, got {value!r}")
    return float(value) if kind is float else value


def spec_from_dict(doc: dict[str, Any], source: str = "the sweep file",
                   validate: bool = True) -> SweepSpec:
    """A :class:`SweepSpec` from a parsed TOML document, validated (``validate=False``: its
    tables, keys and value types only)."""
    check_keys("the top level", doc, list(_TABLES), source)
    parts = {}
    for table, klass in _TABLES.items():
        given = doc.get(table, {})
        if not isinstance(given, dict):
            raise InvalidValueError(f"[{table}] in {source} must be a table, got {given!r}")
        check_keys(f"[{table}]", given, [f.name for f in dataclasses.fields(klass)], source)
        defaults = klass() if klass is not GridSpec else GridSpec()
        parts[table] = klass(**{k: _coerce(table, k, v, getattr(defaults, k), source)
                                for k, v in given.items()})
    spec = SweepSpec(**parts)
    if validate:
        validate_spec(spec, source)
    return spec


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate the TOML sweep file ``path``."""
    path = Path(path)
    if not path.is_file():
        raise InvalidValueError(f"sweep file {str(path)!r} does not exist; give --config FILE.toml")
    return spec_from_dict(read_toml(path, "sweep file"), source=str(path))


def normalize_expert(entry: Any, source: str = "the sweep file") -> dict[str, Any]:
    """"lqr" or {name = "lqr", params = {...}} -> {"name": ..., "params": {...}}."""
    return normalize_named(entry, "experts", source)


def expert_envs(entry: Any, source: str = "the sweep file") -> list[str] | None:
    """The envs an expert entry is limited to ({name = ..., envs = [...]}); None: every env."""
    if not isinstance(entry, dict) or "envs" not in entry:
        return None
    envs = entry["envs"]
    if not (isinstance(envs, list) and envs and all(isinstance(e, str) for e in envs)):
        raise InvalidValueError(f"[grid] experts in {source}: envs of {entry.get('name')!r} must "
                                f"be a non-empty list of env ids, got {envs!r}")
    return list(envs)


def experts_of(spec: SweepSpec, env: str) -> list[Any]:
    """The [grid] experts entries that apply to ``env``, in the grid's order."""
    return [e for e in spec.grid.experts if (expert_envs(e) or [env]).count(env)]


def validate_spec(spec: SweepSpec, source: str = "the sweep file") -> None:
    """Check names against the registries, numbers against their ranges and the demonstrations'
    episode seeds apart from the evaluation's, before any cell runs; ``source`` names the file."""
    t = spec.train
    _check_names(spec, source)
    parse_decoding(t.decode, f"[train] decode in {source}: ")  # as qbc rollout --decode
    if any(p in chunk_policies() for p in t.policies):
        validate_chunk_axes(spec, source)
    model_fields = [f.name for f in dataclasses.fields(ModelConfig)]
    check_keys("[train] model", t.model, model_fields, source)
    _check_numbers(spec, source)
    _check_model(t.model, source)
    if any(p in chunk_policies() for p in t.policies):
        check_chunks_fit_episodes(spec, source)
    _check_ranges(spec, source)
    _check_seeds_apart(spec, source)


def _check_names(spec: SweepSpec, source: str) -> None:
    """At least one env; env ids (and env kwargs), experts, quantizers and policies
    registered."""
    g, t = spec.grid, spec.train
    if not g.envs:
        raise InvalidValueError(f"[grid] envs is missing in {source}; list at least one env id")
    check_env_entries(g.envs, source)
    _check_experts(spec, source)
    for q in g.quantizers:
        if q not in available_quantizers():
            raise UnknownNameError("quantizer", q, available_quantizers())
    for p in t.policies:
        if p != QUANTIZED_EXPERT and p not in (*available_policies(), *chunk_policies()):
            raise UnknownNameError("policy", p, [*available_policies(), *chunk_policies(),
                                                 QUANTIZED_EXPERT])


def _check_ranges(spec: SweepSpec, source: str) -> None:
    """The grid's lists and the bounds :data:`_RULES` does not cover."""
    g, t, r, d = spec.grid, spec.train, spec.rollout, spec.data
    checks = [
        (all(b >= 2 for b in g.bins), f"[grid] bins must be >= 2, got {g.bins}"),
        (all(1 <= n < SEED_STRIDE for n in g.n_demos),
         f"[grid] n_demos must be in [1, {SEED_STRIDE}), got {g.n_demos}"),
        (all(s >= 0 for s in g.seeds), f"[grid] seeds must be >= 0, got {g.seeds}"),
        (all(h >= 1 for h in g.horizons), f"[grid] horizons must be >= 1, got {g.horizons}"),
        (d.seed >= 0, f"[data] seed must be >= 0, got {d.seed}"),
        (d.episode_steps is None or d.episode_steps >= 1,
         f"[data] episode_steps must be >= 1, got {d.episode_steps}"),
        (d.expert_noise >= 0, f"[data] expert_noise must be >= 0, got {d.expert_noise}"),
        (d.num_envs >= 1, f"[data] num_envs must be >= 1, got {d.num_envs}"),
        (t.steps is None or t.steps >= 1, f"[train] steps must be >= 1, got {t.steps}"),
        (t.batch_size >= 1, f"[train] batch_size must be >= 1, got {t.batch_size}"),
        (t.lr > 0, f"[train] lr must be positive, got {t.lr}"),
        (t.eval_interval >= 1, f"[train] eval_interval must be >= 1, got {t.eval_interval}"),
        (0 <= t.val_fraction < 1, f"[train] val_fraction must be in [0, 1), got {t.val_fraction}"),
        (t.token_target in TOKEN_TARGETS,
         f"[train] token_target must be one of {', '.join(TOKEN_TARGETS)}, "
         f"got {t.token_target!r}"),
        (t.token_target != "sampled" or all(get_quantizer_class(q).stochastic or
                                            get_quantizer_class(q).joint for q in g.quantizers),
         f"[train] token_target 'sampled' draws the tokens of a stochastic quantizer (smooth); "
         f"[grid] quantizers {g.quantizers} has deterministic ones: use 'one-hot'"),
        (t.select_by in ("action-mse", "val-loss"),
         f"[train] select_by must be 'action-mse' or 'val-loss', got {t.select_by!r}"),
        (r.episodes >= 1, f"[rollout] episodes must be >= 1, got {r.episodes}"),
        (r.num_envs >= 1, f"[rollout] num_envs must be >= 1, got {r.num_envs}"),
        (r.seed >= 0, f"[rollout] seed must be >= 0, got {r.seed}"),
        (r.divergence_threshold > 0,
         f"[rollout] divergence_threshold must be positive, got {r.divergence_threshold}"),
    ]
    for ok, message in checks:
        if not ok:
            raise InvalidValueError(f"{message} ({source})")


def _check_seeds_apart(spec: SweepSpec, source: str) -> None:
    """Each grid seed's demonstration episode seeds disjoint from the evaluation's: evaluating
    on the episodes the policy was trained on would flatter it."""
    g, r, d = spec.grid, spec.rollout, spec.data
    eval_lo, eval_hi = r.seed, r.seed + r.episodes
    for s in g.seeds:
        lo = d.seed + s * SEED_STRIDE
        if lo < eval_hi and eval_lo < lo + max(g.n_demos):
            raise InvalidValueError(
                f"the demonstrations of grid seed {s} (episode seeds {lo}..) overlap the "
                f"evaluation seeds {eval_lo}..{eval_hi - 1}; move [rollout] seed or [data] seed "
                f"({source})")


#: Ranges of the numbers of each table, beyond the checks of :func:`validate_spec`; every
#: float is also checked finite and every seed in [0, 2^32)
#: (:func:`qbc.infra.validate.check_config`).
_RULES = {"train": {"warmup_steps": Rule(lo=0, integer=True), "quantile": QUANTILE_RANGE},
          "data": {"expert_noise": NON_NEGATIVE}, "rollout": {}}


def _check_numbers(spec: SweepSpec, source: str) -> None:
    """Every number of [data], [train] and [rollout] finite, in 64 bits and in its range."""
    for table in ("data", "train", "rollout"):
        try:
            check_config(getattr(spec, table), dict(_RULES[table]))
        except InvalidValueError as exc:
            raise InvalidValueError(f"[{table}] {_as_key(str(exc))} ({source})") from None


def _as_key(message: str) -> str:
    """'--warmup-steps must be ...' -> 'warmup_steps must be ...' (a sweep file has keys)."""
    flag, sep, rest = message.partition(" ")
    return flag[2:].replace("-", "_") + sep + rest if flag.startswith("--") else message


def _check_model(model: dict[str, Any], source: str) -> None:
    """[train] model settings: the checks of ``qbc train --model.*``, before any cell runs."""
    try:
        check_model_config(ModelConfig(**model))
    except InvalidValueError as exc:
        raise InvalidValueError(f"[train] model in {source}: {exc}") from None


def _check_experts(spec: SweepSpec, source: str) -> None:
    """Expert names registered; their envs in [grid] envs; every env has an expert."""
    for entry in spec.grid.experts:
        name = normalize_expert(entry, source)["name"]
        if name not in available_experts():
            raise UnknownNameError("expert", name, available_experts())
        outside = sorted(set(expert_envs(entry, source) or []) - set(env_ids(spec.grid.envs)))
        if outside:
            raise InvalidValueError(f"[grid] experts in {source}: envs of {name!r} lists "
                                    f"{outside}, which [grid] envs does not")
    for env in env_ids(spec.grid.envs):
        if not experts_of(spec, env):
            raise InvalidValueError(f"[grid] experts in {source}: no expert applies to {env!r}; "
                                    "add one without envs or with this env in its envs")
