"""``qbc tokenize``: fit an :class:`~qbc.tokenizer.ActionTokenizer` on actions saved as .npy,
print its report and save it as JSON."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qbc.cli import Command
from qbc.errors import CorruptFileError, InvalidValueError
from qbc.infra.run_folder import output_file
from qbc.infra.validate import check_config, check_memory
from qbc.quantizers import QUANTILE_RANGE, check_bins_flag, quantile_params
from qbc.quantizers.base import action_matrix
from qbc.tokenizer import ActionTokenizer


@dataclass
class TokenizeConfig:
    """Fit an action tokenizer on stored actions, print its report and save it as JSON."""

    actions: Path
    """.npy file with an (N, D) float array of actions."""
    out: Path = Path("tokenizer.json")
    """where to write the tokenizer JSON."""
    quantizer: str = "uniform"
    """registry name: uniform, smooth, kmeans, lloyd_max, sign, vq or theorem6 (fixed levels:
    leave --bins out)."""
    bins: int = 64
    """tokens per position (vocabulary size)."""
    per_dim: bool = True
    """one quantizer per action dimension (else one shared by all)."""
    quantile: float = 0.0
    """for uniform/smooth: fit the range to the [q, 1-q] quantiles instead of min/max."""
    overwrite: bool = False
    """replace an existing output file."""


#: Ranges of the numeric flags (the quantizer checks its own settings when it is built).
TOKENIZE_RULES = {"quantile": QUANTILE_RANGE}


def run_tokenize(cfg: TokenizeConfig) -> dict[str, Any]:
    check_config(cfg, TOKENIZE_RULES)
    actions = load_actions_file(cfg.actions)
    n_dims = actions.shape[1]
    # codebooks, per-token counts of the report and the decode table: a few copies of D x bins
    check_memory(32.0 * max(cfg.bins, 1) * n_dims + 16.0 * actions.size,
                 f"a tokenizer of {cfg.bins:,} bins for {n_dims} action dimension(s)",
                 "use fewer --bins")
    params = quantile_params(cfg.quantizer, cfg.quantile)
    check_bins_flag(cfg.quantizer, cfg.bins)
    with output_file(cfg.out, cfg.overwrite, "tokenize") as out:
        tok = ActionTokenizer(cfg.quantizer, cfg.bins, cfg.per_dim, params).fit(actions)
        tok.save(out)
    tok.warn_clipped(actions)
    rep = tok.report(actions)
    print(format_report(rep))
    print(f"saved {cfg.out}")
    return rep


def load_actions_file(path: Path) -> np.ndarray:
    """The real, finite (N, D) float64 array of a .npy file (no pickle; an (N,) array is N
    actions of one dimension); a missing, damaged or non-.npy file, or one holding anything
    else, is refused in one line naming it."""
    if not path.is_file():
        raise InvalidValueError(f"actions file {str(path)!r} does not exist")
    with open(path, "rb") as f:
        if f.read(6) != b"\x93NUMPY":
            raise CorruptFileError(f"{str(path)!r} is not a .npy file (no NumPy header); save "
                                   "the actions with numpy.save")
    from tokenize import TokenError  # what numpy's header parser raises on an unclosed bracket

    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, EOFError, OSError, SyntaxError, TypeError, OverflowError, MemoryError,
            TokenError) as exc:  # a damaged header: numpy parses it as a Python literal
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CorruptFileError(f"cannot read {path} as a .npy array: {why}") from None
    # a readable file of the wrong contents: the refusal names it
    return action_matrix(array, f"the actions in {str(path)!r}", non_empty=True)


def format_report(rep: dict[str, Any]) -> str:
    """A tokenizer report (:meth:`ActionTokenizer.report`) as a small text table."""
    lines = [f"tokenizer: {rep['quantizer']} ({rep['layout']}), vocab {rep['vocab_size']}, "
             f"{rep['bits_per_action']:.1f} bits/action, {rep['n_actions']} actions",
             f"{'dim':>4} {'max|err|':>10} {'mean|err|':>10} {'bound':>10} {'clipped':>8} "
             f"{'entropy':>8}"]
    for d, r in enumerate(rep["per_dim"]):
        bound = "-" if r["error_bound"] is None else f"{r['error_bound']:.4g}"
        lines.append(f"{d:>4} {r['max_abs_error']:>10.4g} {r['mean_abs_error']:>10.4g} "
                     f"{bound:>10} {r['clipped_fraction']:>8.2%} {r['usage_entropy_bits']:>8.2f}")
    return "\n".join(lines)


COMMAND = Command(TokenizeConfig, run_tokenize, "fit an action tokenizer on saved actions")
