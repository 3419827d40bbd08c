"""The ``qbc certify`` command: ε_q, the P-IISS gain, the RTVC violation rate and the shapes of
the theory's bounds (:mod:`qbc.certify.certificate`) on a dataset's env, expert and tokenizer;
writes
certificate.json and prints it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from qbc.certify.certificate import certificate
from qbc.certify.deployment import algorithm_1_deployment
from qbc.certify.result import Certificate
from qbc.cli import Command
from qbc.cli.flag_types import KeyValues, expert_params
from qbc.cli.lists import parse_horizons, positive_floats
from qbc.data import check_compatible, load_demonstrations
from qbc.data.expert_choice import build_expert, choose_expert
from qbc.envs.make import make_env
from qbc.errors import CorruptFileError, InvalidValueError
from qbc.infra.files import atomic_write_json, json_safe, read_json_object
from qbc.infra.run_folder import output_dir
from qbc.infra.validate import AT_LEAST_ONE, POSITIVE, SEED_LIMIT, Rule, check_all, check_config
from qbc.quantizers import check_bins_flag
from qbc.rollout.report import RolloutReport
from qbc.stepping.limits import check_rollout_memory
from qbc.tokenizer import ActionTokenizer


@dataclass
class CertifyConfig:
    """Measure ε_q, the P-IISS gain and the RTVC violation rate, and evaluate the shapes of the
    theory's bounds with them (beside measured regret when a rollout is given)."""

    dataset: str
    """Minari dataset id of the expert demonstrations."""
    out: Path
    """output directory (certificate.json)."""
    env: str | None = None
    """env id; default: the dataset's env."""
    expert: str | None = None
    """expert: lqr, linear, arctan, detour (qbc's own envs), fetch-push, fetch-pick-and-place,
    maze-planner (the Gymnasium-Robotics tasks), sb3 (--expert-path ZIP), zoo:ENV (a trained
    actor shipped with qbc, e.g. zoo:Pendulum-v1; `qbc expert list`) or actor (--expert-path
    FOLDER, an actor folder from `qbc expert train` / `qbc expert export`);
    default: the expert that collected the dataset (recorded in its metadata, or given later
    with `qbc data set-expert`), else sb3 when only --expert-path is given, else the env's
    default: zoo:ENV when the zoo has the env, the env's scripted expert for the robotics
    tasks, else lqr."""
    expert_path: Path | None = None
    """the expert's model: an SB3 zip (sb3) or an actor folder (actor); also replaces the path
    of the dataset's expert."""
    expert_params: KeyValues = ()
    """expert parameters as KEY=VALUE pairs, e.g. gain_scale=0.8, or a JSON object (replace the
    dataset expert's parameters of the same name)."""
    tokenizer: Path | None = None
    """tokenizer JSON; without it one is fitted on the dataset's actions with --quantizer/--bins."""
    quantizer: str = "uniform"
    """registry quantizer to fit when no --tokenizer is given."""
    bins: int = 64
    """bins of that quantizer."""
    sizes: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3)
    """perturbation sizes r for the P-IISS gain (space- or comma-separated)."""
    deltas: tuple[float, ...] = (0.001, 0.003, 0.01, 0.03, 0.1)
    """state distances δ for the RTVC violation rate (space- or comma-separated)."""
    k: float = 2.0
    """RTVC threshold in units of ε_q (codewords more than k·ε_q apart count as a violation)."""
    horizon: int = 200
    """horizon of the gain measurement."""
    episodes: int = 50
    """coupled episodes per perturbation size."""
    horizons: tuple[int, ...] = (10, 20, 50, 100, 200, 500)
    """horizons at which to evaluate the bound shapes (space- or comma-separated)."""
    rollout: Path | None = None
    """a `qbc rollout` output directory whose measured regret is put beside the bounds."""
    seed: int = 2_000_000
    """first episode seed of the gain measurement."""
    overwrite: bool = False
    """replace an existing output directory."""
    drop_nonfinite: bool = False
    """drop episodes with NaN/inf observations or actions instead of refusing the dataset."""


#: Ranges of the numeric flags (floats are also checked finite, seeds in [0, 2^32)).
RULES = {"k": POSITIVE, "bins": Rule(lo=2, integer=True), "horizon": Rule(lo=2, integer=True),
         "episodes": AT_LEAST_ONE}


def open_inputs(cfg: CertifyConfig) -> dict[str, Any]:
    """Check every flag and open every input, before anything is written."""
    check_config(cfg, RULES)
    fit_flags = [f"--{k}" for k, default in (("quantizer", "uniform"), ("bins", 64))
                 if getattr(cfg, k) != default]
    check_all([(cfg.seed + cfg.episodes <= SEED_LIMIT,
                f"--seed + --episodes must stay below 2^32, got {cfg.seed} + {cfg.episodes}"),
               (cfg.tokenizer is None or not fit_flags,  # they were ignored without a word
                f"{', '.join(fit_flags)} choose the tokenizer fitted without --tokenizer; "
                f"--tokenizer {cfg.tokenizer} would ignore them: leave them out")])
    if cfg.tokenizer is None:
        check_bins_flag(cfg.quantizer, cfg.bins)
    sizes = positive_floats(cfg.sizes, "--sizes")
    deltas = positive_floats(cfg.deltas, "--deltas")
    horizons = parse_horizons(cfg.horizons)
    metrics = (None if cfg.rollout is None else
               read_json_object(Path(cfg.rollout) / "metrics.json", what="rollout metrics"))
    if metrics is not None and not (isinstance(metrics, dict) and "reference" in metrics
                                    and isinstance(metrics.get("policies"), dict)):
        raise CorruptFileError(f"{Path(cfg.rollout) / 'metrics.json'} is not the metrics.json "
                               "of qbc rollout (no 'policies' and 'reference')")
    report = None if metrics is None else RolloutReport.from_json(metrics,
                                                                  _rollout_config(cfg.rollout))
    demos = load_demonstrations(cfg.dataset, drop_nonfinite=cfg.drop_nonfinite)
    env_id = cfg.env or demos.env_id
    if env_id is None:
        raise InvalidValueError("the dataset does not record its env: give --env")
    env = make_env(env_id)
    try:
        check_compatible(demos, env.observation_space, env.action_space)
    finally:
        env.close()
    check_rollout_memory(env_id, len(sizes) + 1, cfg.episodes, cfg.horizon,
                         "use fewer --episodes, --sizes or a shorter --horizon")
    tok = (ActionTokenizer.load(cfg.tokenizer) if cfg.tokenizer is not None else
           ActionTokenizer.fit(demos.actions, quantizer=cfg.quantizer, n_bins=cfg.bins))
    choice = choose_expert(cfg.expert, cfg.expert_path,
                           expert_params(cfg.expert_params), cfg.dataset, env_id)
    expert = build_expert(choice, env_id)
    return {"sizes": sizes, "deltas": deltas, "horizons": horizons, "metrics": report,
            "demos": demos, "env_id": env_id, "tok": tok, "expert": expert, "choice": choice}


def run_certify(cfg: CertifyConfig) -> Certificate:
    inp = open_inputs(cfg)
    with output_dir(cfg.out, cfg.overwrite, "certify") as out:
        cert = certificate_of(cfg, **inp)
        # a perturbation that ends episodes early has no finite gain: inf, written as null
        atomic_write_json(out / "certificate.json", json_safe(cert.to_json()))
        atomic_write_json(out / "config.json", {k: str(v) if isinstance(v, Path) else v
                                                for k, v in asdict(cfg).items()}
                          | {"expert_params": expert_params(cfg.expert_params)})
    print(format_certificate(cert))
    print(f"saved {cfg.out / 'certificate.json'}")
    return cert


def _rollout_config(rollout: Path) -> dict[str, Any] | None:
    """A rollout folder's config.json (how it deployed the policy), None where it has none."""
    path = Path(rollout) / "config.json"
    return read_json_object(path, what="rollout config") if path.is_file() else None


def certificate_of(cfg: CertifyConfig, sizes: list[float], deltas: list[float],
                   horizons: list[int], metrics: RolloutReport | None, demos: Any, env_id: str,
                   tok: Any, expert: Any, choice: Any) -> Certificate:
    """The certificate of ``cfg`` from its opened inputs (:func:`open_inputs`): what it
    measured with, :func:`qbc.certify.certificate.certificate`, and the measured regret of a
    rollout."""
    cert = {
        "env_id": env_id, "dataset": cfg.dataset, "expert": choice.name,
        "expert_spec": choice.to_dict(),
        "tokenizer": {"quantizer": tok.quantizer, "vocab_size": tok.vocab_size},
        "n_demos": int(demos.n_episodes),
        **certificate(env_id, expert, tok, demos.observations, demos.actions,
                      demos.n_episodes, sizes, deltas, horizons, k=cfg.k, horizon=cfg.horizon,
                      seeds=range(cfg.seed, cfg.seed + cfg.episodes),
                      model_based=algorithm_1_deployment(
                          None if metrics is None else metrics.policies,
                          None if metrics is None else metrics.config)),
    }
    if metrics is not None:
        cert["measured_regret"] = {
            name: {h: per_h[h]["regret"] for h in per_h}
            for name, per_h in metrics.policies.items() if name != metrics.reference
        }
    return Certificate.from_json(cert)


def format_certificate(cert: Certificate) -> str:
    """The printed certificate: ε_q, γ, κ (each named as the estimate it is), the bound shapes
    against H and, per theorem, its hypotheses and whether this run satisfies them."""
    g, r = cert.piiss, cert.rtvc
    lines = [
        f"certificate: {cert.env_id}, expert {cert.expert}, tokenizer "
        f"{cert.tokenizer['quantizer']} ({cert.tokenizer['vocab_size']} levels), "
        f"{cert.n_demos} demos",
        f"q#pi*: {cert.q_sharp_pi_star}",
        _eps_line(cert.eps_q, cert.eps_q_used, cert.eps_q_kind),
        "P-IISS gain (episode mean of the peak gap: a lower estimate of the sup): "
        + ", ".join(f"γ({s:g})={v:.4g}" for s, v in zip(g["sizes"], g["gains"], strict=True))
        + f"; {g['verdict']}",
        _kappa_line(r),
        _at_line(cert.gamma, cert.gamma_grid, cert.kappa, cert.kappa_grid),
    ]
    if cert.nearest is not None:
        n = cert.nearest
        lines += [f"beside it, q#pi* by {n['q_sharp_pi_star']}:",
                  "  " + _eps_line(n["eps_q"], n["eps_q_used"], "worst case"),
                  "  " + _kappa_line(n["rtvc"]),
                  "  " + _at_line(n["gamma"], n["gamma_grid"], n["kappa"], n["kappa_grid"])]
    names = list(cert.measured_regret or {})  # whole names: several share a 16-letter prefix
    width = max([18, *(len(n) + 2 for n in names)])
    lines.append(f"{'H':>6}{'thm2 shape':>13}{'thm3 shape':>13}{'thm7 shape':>13}"
                 + "".join(f"{n:>{width}}" for n in names))
    b = cert.bound_shapes
    for i, h in enumerate(b["horizons"]):
        measured = "".join(f"{m.get(str(h), float('nan')):>{width}.4g}"
                           for m in (cert.measured_regret or {}).values())
        lines.append(f"{h:>6}{b['thm2'][i]:>13.4g}{b['thm3'][i]:>13.4g}{b['thm7'][i]:>13.4g}"
                     + measured)
    lines.append("(bound shapes: constants and log factors set to 1 — compare their growth in H, "
                 "not values)")
    for thm, h in cert.bound_hypotheses.items():
        marks = "; ".join(f"{x['name']}: {_holds(x['holds'])}" for x in h["hypotheses"])
        verdict = "hypotheses hold" if h["applies"] else "NOT shown to apply"
        lines.append(f"{thm}: {verdict} — {marks}"
                     + (f" (evaluated with {h['evaluated_with']})" if "evaluated_with" in h
                        else ""))
    lines += [_thm3_growth_line(cert), HYPOTHESES_NOTE]
    return "\n".join(lines)


def _thm3_growth_line(cert: Certificate) -> str:
    """Whether Theorem 3's bound is linear in H: its H² term is κ(γ((k+1)ε_q))·H², so it is
    linear only where that κ is 0; otherwise the horizon from which the H² term dominates. Where
    Theorem 3's hypotheses are not shown to hold (e.g. k-means: not a binning) the line says the
    shape is only a shape."""
    eps, gamma, kappa = ((cert.nearest["eps_q_used"], cert.nearest["gamma"],
                          cert.nearest["kappa"]) if cert.nearest is not None
                         else (cert.eps_q_used, cert.gamma, cert.kappa))
    caveat = ("" if cert.bound_hypotheses["thm3"]["applies"] else
              " (a shape only: Theorem 3 is not shown to apply to this run, see thm3 above)")
    if kappa == 0:
        return ("thm3's H² term: κ(γ((k+1)ε_q)) = 0 on the sampled pairs: the shape is linear in "
                "H" + caveat)
    k = cert.rtvc["k"]
    onset = (gamma + (k + 1) * eps + 1 / cert.n_demos) / kappa
    when = (f"from H ≈ {onset:.3g} on" if onset >= 1 else
            f"from the first step (the linear terms over κ: {onset:.3g} < 1)")
    return (f"thm3's H² term: κ(γ((k+1)ε_q)) = {kappa:.3g} > 0: the shape grows as κ·H² and "
            f"that term dominates {when} (κ: the sampled rate; the worst-case "
            "κ of this deterministic q#π* is 1 wherever that rate is above 0)" + caveat)


#: What "hypotheses hold" rests on, printed under the theorems' lines.
HYPOTHESES_NOTE = ("(hypotheses: a measured one is judged from the estimates above, on sampled "
                   "episodes and state pairs; the expert's Lipschitz continuity and the policy "
                   "class's TV continuity are assumed, not checked; each one's basis is under "
                   "bound_hypotheses in certificate.json)")


def _holds(value: bool | None) -> str:
    return {True: "yes", False: "no", None: "not measured"}[value]


def _eps_line(e: dict[str, Any], used: float, kind: str) -> str:
    bound = "-" if e["worst_case_bound"] is None else f"{e['worst_case_bound']:.4g}"
    return (f"eps_q ({e['rounding']} rounding): worst case {bound}, in-distribution mean "
            f"{e['in_distribution_mean']:.4g} / max {e['in_distribution_max']:.4g} (using "
            f"{used:.4g}, {kind})")


def _kappa_line(r: dict[str, Any]) -> str:
    line = (f"RTVC violation rate (k={r['k']:g}; fraction of {r['n_pairs']} sampled state "
            "pairs, not a sup): " + ", ".join(
                f"κ({d:g})={v:.3g}" for d, v in zip(r["deltas"], r["violation_rate"],
                                                   strict=True)))
    if r.get("rounding") == "stochastic":  # k·ε_q is k bin widths here: κ counts few pairs
        line += ("; tokens changed (tolerance 0, shared draws): " + ", ".join(
            f"{d:g}: {v:.3f}" for d, v in zip(r["deltas"], r["token_change_rate"], strict=True)))
    return line


def _at_line(gamma: float, gamma_grid: str, kappa: float, kappa_grid: str) -> str:
    flags = "".join(f" [{name} {where}]" for name, where in (("γ", gamma_grid),
                                                            ("κ", kappa_grid))
                    if where != "inside")
    return f"γ((k+1)ε_q) = {gamma:.4g}, κ there = {kappa:.3g}" + flags


COMMAND = Command(CertifyConfig, run_certify,
                  "measure ε_q, P-IISS gain, RTVC rate and the bounds' shapes")
