"""The ``qbc rollout`` command: coupled rollouts of a trained policy (or any importable actor),
its quantized expert and the expert (:func:`qbc.rollout.evaluate.evaluate`); metrics.json,
per_step.csv, PNG plots (:func:`qbc.rollout.report.write_report`) and a summary table."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from qbc.cli import Command
from qbc.cli.collect import mode_line
from qbc.cli.config_file import ConfigFile, key_values_as_flags
from qbc.cli.flag_types import KeyValues, expert_params
from qbc.infra.run_folder import output_dir
from qbc.rollout.evaluate import evaluate
from qbc.rollout.inputs import EvalConfig, open_inputs
from qbc.rollout.report import RolloutReport, write_report


@dataclass
class RolloutConfig(EvalConfig):
    """Roll a policy out against the expert from the same seeds (coupled) and measure how the
    regret and the state deviation grow with the horizon."""

    expert_params: KeyValues = ()
    """expert parameters as KEY=VALUE pairs, e.g. gain_scale=0.8, or a JSON object (replace the
    dataset expert's parameters of the same name)."""


def run_rollout(cfg: RolloutConfig) -> dict[str, Any]:
    """Open the inputs (every refusal before any output), evaluate into the output folder,
    write the report, print the summary; returns the metrics.json object."""
    # the library takes the parsed parameters (config.json records them as a dict)
    cfg = replace(cfg, expert_params=expert_params(cfg.expert_params))
    inputs = open_inputs(cfg)
    with output_dir(cfg.out, cfg.overwrite, "rollout") as out:
        report = evaluate(cfg, inputs, out=out, log=print)
        write_report(out, report)
    print_report(report, cfg.out)
    return report.to_json()


def print_report(report: RolloutReport, out: Path) -> None:
    """The one-screen summary, the verdict, chunk execution and floor lines, and the timing."""
    metrics = report.to_json()
    print(format_summary(metrics))
    if report.verdict:
        print(report.verdict["text"])
    for name, e in report.execution.items():
        print(f"{name}: executed {e['execute']} (k = {e['chunk_len']}): {e['chunks']} chunks "
              f"predicted, {e['decode_failures']} decode failures (repaired)")
    if report.chunk_floor:
        cf = report.chunk_floor
        ratios = ", ".join(f"H={h}: " + ("n/a" if r["ratio"] is None else f"{r['ratio']:.3g}x")
                           for h, r in cf["horizons"].items())
        print(f"learner / chunk floor ({cf['floor']}) regret: {ratios}")
    n_actions, seconds = report.n_actions, report.timing["seconds"]
    print(f"{n_actions} actions in {seconds:.1f} s ({n_actions / seconds:,.0f} actions/s); "
          f"outputs in {out}")


def format_summary(metrics: dict[str, Any]) -> str:
    """The one-screen table: return, regret (95% CI), state deviation and divergence per policy
    and H (the expert's return first), plus the success rate (95% interval) and the mode
    coverage where the env reports them."""
    policies = metrics["policies"]
    ref = metrics["reference"]
    first = policies[ref][str(metrics["horizons"][0])]
    success = "success" in first
    lines = [f"coupled rollouts on {metrics.get('env_id', '?')} (reference: expert)",
             f"{'policy':<28}{'H':>6}{'return':>10}{'regret':>11}{'95% CI':>24}{'dev mean':>10}"
             f"{'div':>6}" + (f"{'success [95% CI]':>24}" if success else "")]
    for name in [ref] + [n for n in policies if n != ref]:
        per_h = policies[name]
        for h in metrics["horizons"]:
            m = per_h[str(h)]
            lo, hi = m["regret_ci95"]
            regret, ci = ((f"{m['regret']:.4g}", f"[{lo:.3g}, {hi:.3g}]") if name != ref
                          else ("-", "-"))
            line = (f"{name:<28}{h:>6}{m['return']:>10.4g}{regret:>11}{ci:>24}"
                    f"{m['state_dev_mean']:>10.3g}{m['diverged_fraction']:>6.0%}")
            if "success" in m:
                s_lo, s_hi = m["success_ci95"]
                cell = f"{m['success']:.0%} [{s_lo:.0%}, {s_hi:.0%}]"
                line += f"{cell:>24}"
            lines.append(line)
        last = per_h[str(metrics["horizons"][-1])]
        if "modes" in last:
            lines.append(f"{'':<28}{mode_line(last['modes'])}")
        fit = metrics.get("growth", {}).get(name)
        if fit:
            lines.append(f"{'':<28}{growth_line(fit)}")
    return "\n".join(lines + floor_lines(metrics.get("floors", {})))


def floor_lines(floors: dict[str, dict[str, Any]]) -> list[str]:
    """One line per quantized expert: its rounding and whether it is the policy's floor."""
    lines = []
    for name, f in floors.items():
        match = {True: " — the floor of this policy's decoding",
                 False: " — not the floor of this policy's decoding", None: ""}
        lines.append(f"{name}: {f['what']}{match[f['floor_of_decoding']]}")
    return lines


def growth_line(fit: dict[str, Any]) -> str:
    """One line on how regret grows with H, from :func:`qbc.rollout.growth.fit_growth`: the fitted
    power law and exponential rate, then the better fit only when growth is detected."""
    if not fit.get("power"):
        return f"growth: {fit['verdict']}"
    p = fit["power"]
    text = (f"growth: regret ~ H^{p['slope']:.2f} [{p['ci95'][0]:.2f}, {p['ci95'][1]:.2f}]; "
            f"exponential rate {fit['exponential']['rate']:.3g}/step; ")
    if fit["growth_detected"]:
        return text + f"better fit: {fit['better']}"
    return text + f"no growth detected ({fit['no_growth_reason']})"


#: ``--config FILE``: a rollout's config.json or a TOML file of RolloutConfig's fields.
CONFIG_FILE = ConfigFile(
    per_run=frozenset({"overwrite"}), saved="runs/rollout/config.json",
    adjust=key_values_as_flags("expert_params"),
    help="start from the settings in FILE: a rollout's config.json (repeats that evaluation) "
         "or a TOML file of the same fields ([expert_params] table for --expert-params); flags "
         "given on the command line override them. The file's overwrite is not read: give "
         "--out (or --overwrite) here.")

COMMAND = Command(RolloutConfig, run_rollout,
                  "coupled rollouts vs the expert: regret and state deviation against H",
                  config_file=CONFIG_FILE)
