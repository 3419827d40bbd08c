"""One :class:`qbc.registry.Registry` behind every plug-in kind (quantizer, chunk tokenizer, policy
kind incl. chunk policies, expert, STE pair, env), and a policy kind added from outside qbc: a
class and its config registered in this file train, save, load and act with no other file
touched."""

from __future__ import annotations

import ast
from dataclasses import asdict, dataclass

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from repository import ROOT
from torch import nn

from qbc.agents import EXPERTS, available_experts
from qbc.chunking import CHUNK_TOKENIZERS, available_chunk_tokenizers
from qbc.envs import ENVS, available_envs
from qbc.errors import InvalidValueError, UnknownNameError
from qbc.policy import (
    POLICY_KINDS,
    ModelConfig,
    available_policies,
    build_policy,
    chunk_policies,
    load_policy,
    register_policy,
)
from qbc.quantizers import QUANTIZERS, available_quantizers
from qbc.registry import Registry
from qbc.ste import STE_PAIRS, available_ste, get_ste

#: kind -> (its registry, names it holds at least)
KINDS = {
    "quantizer": (QUANTIZERS, {"uniform", "kmeans", "smooth", "sign", "lloyd_max", "vq"}),
    "chunk tokenizer": (CHUNK_TOKENIZERS, {"beast", "fast", "per-step", "rvq"}),
    "policy": (POLICY_KINDS, {"ar-transformer", "independent-categorical", "mlp-mse",
                              "mlp-gaussian", "chunk-ar-transformer", "chunk-mlp-l1"}),
    "expert": (EXPERTS, {"lqr", "linear", "arctan", "sb3", "actor", "detour"}),
    "STE pair": (STE_PAIRS, {"bc", "pc", "bnn", "bnn+", "bnn++"}),
    "env": (ENVS, {"qbc/ScalarStable-v0", "qbc/LinearUnstable-v0", "qbc/DetourStable-v0",
                   "qbc/InvertedPendulum-v0", "qbc/CartPoleContinuous-v0"}),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_plugin_kind_is_one_registry(kind):
    registry, names = KINDS[kind]
    assert isinstance(registry, Registry) and registry.kind == kind
    assert names <= set(registry.names()), sorted(names - set(registry.names()))
    with pytest.raises(UnknownNameError, match=f"unknown {kind} 'nope'.* Valid {kind} names: "):
        registry.get("nope")


def test_the_listings_are_the_registries():
    assert available_quantizers() == QUANTIZERS.names()
    assert available_chunk_tokenizers() == CHUNK_TOKENIZERS.names()
    assert available_policies() == POLICY_KINDS.names(chunk=False) == [
        "ar-transformer", "independent-categorical", "mlp-gaussian", "mlp-mse"]
    assert chunk_policies() == POLICY_KINDS.names(chunk=True) == [
        "chunk-ar-transformer", "chunk-mlp-l1"]
    assert set(EXPERTS.names()) <= set(available_experts())
    assert available_ste()[:5] == list(STE_PAIRS) == ["bc", "pc", "bnn", "bnn+", "bnn++"]
    assert available_envs() == ENVS.names()


def test_policy_kinds_carry_their_class_and_config():
    for name in POLICY_KINDS.names():
        entry = POLICY_KINDS.entry(name)
        assert entry.value.kind == name and isinstance(entry.meta["config"], type)
        assert entry.value.is_token_policy == entry.meta["tokens"]
        assert entry.value.is_chunk_policy == entry.meta["chunk"]
    assert POLICY_KINDS.names(head=True) == ["ar-transformer"]


def test_envs_are_registered_with_gymnasium_as_their_spec_says():
    for env_id in ENVS:
        spec, gym_spec = ENVS.get(env_id), gym.spec(env_id)
        assert (gym_spec.entry_point, gym_spec.vector_entry_point) == (
            spec.entry_point, spec.vector_entry_point)
        assert gym_spec.max_episode_steps == spec.horizon and gym_spec.kwargs == spec.kwargs


def test_ste_pairs_come_from_the_registry():
    q = get_ste("bnn")
    assert q.pair is STE_PAIRS.get("bnn") and q.params == {"clip": 1.0}
    x = torch.tensor([-2.0, -0.5, 0.5, 2.0], requires_grad=True)
    q(x).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 0.0]


def test_registry_behaviour():
    reg: Registry = Registry("widget")

    @reg.register("b", size=2)
    class B:
        """A widget.

        More words."""

    reg.add("a", B, size=1)  # one object may have two names
    assert B.name == "a" and list(reg) == ["b", "a"] and reg.names() == ["a", "b"]
    assert reg.names(size=2) == ["b"] and reg.meta("a") == {"size": 1} and len(reg) == 2
    assert reg.entry("b").description == "A widget."
    reg.add("b", B)  # the same object again (a reloaded module) passes
    with pytest.raises(ValueError, match="widget name 'b' is already registered"):
        reg.add("b", object())
    with pytest.raises(UnknownNameError, match=r"unknown widget 'bb'\. Did you mean 'b'"):
        reg.meta("bb")
    assert reg.remove("a") is B and "a" not in reg


def test_no_parallel_lists_of_kinds_are_left():
    # the kinds register themselves; these tables were the second place that listed them
    sources = {p: p.read_text() for tree in ("qbc", "agents", "envs")
               for p in (ROOT / tree).rglob("*.py")}
    for old in ("_POLICIES", "_CLASSES", "CHUNK_POLICIES", "_EXPERTS", "ENV_SPECS", "_PAIRS ="):
        assert not [p for p, text in sources.items() if old in text], old
    # the policy registry imports none of the kinds it holds (they import it)
    tree = ast.parse((ROOT / "qbc/policy/registry.py").read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not {"qbc.policy.ar_transformer", "qbc.policy.baselines", "qbc.policy.chunked"} \
        & imported


def _field_help(path: str, cls: str, field: str) -> str:
    """The docstring under ``field`` of dataclass ``cls`` in ``path`` (its --help text)."""
    body = next(n for n in ast.walk(ast.parse((ROOT / path).read_text()))
                if isinstance(n, ast.ClassDef) and n.name == cls).body
    i = next(i for i, n in enumerate(body) if isinstance(n, ast.AnnAssign)
             and n.target.id == field)
    return body[i + 1].value.value


@pytest.mark.parametrize("path, cls, kinds", [
    ("qbc/training/config.py", "_TrainHead", available_policies),
    ("qbc/interactive/config.py", "DaggerConfig", available_policies),
    ("qbc/training/chunked.py", "_ChunkHead", chunk_policies)])
def test_policy_help_names_every_registered_kind(path, cls, kinds):
    # --help comes from the field's docstring, which cannot read the registry: checked here
    text = _field_help(path, cls, "policy")
    assert all(kind in text for kind in kinds()), text


# -- a policy kind from outside qbc ------------------------------------------------------------
@dataclass
class ToyConfig:
    """Shape of the toy policy."""

    obs_dim: int
    act_dim: int
    obs_history: int = 1


class ToyLinear(nn.Module):
    """A linear map from the observation history to the normalised action (mean squared error)."""

    def __init__(self, cfg: ToyConfig):
        super().__init__()
        self.cfg = cfg
        self.linear = nn.Linear(cfg.obs_dim * cfg.obs_history, cfg.act_dim)

    def config_dict(self) -> dict:
        return asdict(self.cfg)

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.mse_loss(self.linear(batch["obs"].flatten(1)), batch["actions"])

    @torch.no_grad()
    def predict(self, obs: torch.Tensor, deterministic: bool = True,
                generator: torch.Generator | None = None) -> torch.Tensor:
        return self.linear(obs.flatten(1))


def _build_toy(m: ModelConfig, obs_dim: int, act_dim: int, n_tokens: int, vocab: int) -> ToyLinear:
    return ToyLinear(ToyConfig(obs_dim=obs_dim, act_dim=act_dim, obs_history=m.obs_history))


@pytest.fixture
def toy_kind():
    """The kind ``toy-linear``, registered for the test only (the registry is process-wide)."""
    register_policy("toy-linear", ToyConfig, tokens=False, build=_build_toy)(ToyLinear)
    yield "toy-linear"
    POLICY_KINDS.remove("toy-linear")


def test_a_policy_kind_registered_here_trains_saves_loads_and_acts(tmp_path, toy_kind,
                                                                   tiny_lin_copy, monkeypatch):
    from qbc.data import load_demonstrations
    from qbc.training import TrainConfig, train

    tiny_lin_copy(tmp_path)
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    assert toy_kind in available_policies()
    cfg = TrainConfig(dataset="qbc/lin-v0", out=tmp_path / "toy", policy=toy_kind, steps=4,
                      batch_size=16, eval_interval=2, warmup_steps=1, progress=False,
                      rollout_episodes=0)
    result = train(cfg, load_demonstrations("qbc/lin-v0"))
    assert result.policy.kind == toy_kind and result.policy.tokenizer is None
    policy = load_policy(tmp_path / "toy")
    assert isinstance(policy.module, ToyLinear) and policy.kind == toy_kind
    obs = np.zeros((3, policy.module.cfg.obs_dim), np.float32)
    assert policy.act(obs).shape == (3, policy.module.cfg.act_dim)
    # the settings checks read the registry too: a continuous kind refuses token settings
    with pytest.raises(InvalidValueError, match="--bins sets the action tokens, which --policy "
                       "toy-linear does not have"):
        train(TrainConfig(dataset="qbc/lin-v0", out=tmp_path / "t2", policy=toy_kind, bins=8,
                          steps=4, progress=False), load_demonstrations("qbc/lin-v0"))


def test_a_removed_kind_is_unknown_again():
    with pytest.raises(UnknownNameError, match="unknown policy 'toy-linear'"):
        build_policy("toy-linear", ModelConfig(), 2, 1)
