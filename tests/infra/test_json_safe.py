"""qbc.infra.files.json_safe: the one rule every JSON file qbc writes goes through."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qbc.infra.files import atomic_write_json, json_safe


@dataclass
class _Config:
    out: Path
    sizes: tuple[int, ...]
    rate: float


def test_json_safe_plain_values_and_the_nan_rule(tmp_path):
    obj = {"config": _Config(Path("runs/x"), (1, 2), math.inf),
           "values": [np.float32(0.5), np.int64(3), np.array([1.0, np.nan]), float("-inf")],
           "tags": {"b", "a"}, "flag": np.bool_(True), np.int64(7): "numpy key", "n": None}
    safe = json_safe(obj)
    assert safe == {"config": {"out": "runs/x", "sizes": [1, 2], "rate": None},
                    "values": [0.5, 3, [1.0, None], None], "tags": ["a", "b"], "flag": True,
                    7: "numpy key", "n": None}
    assert type(safe["values"][1]) is int and type(safe["flag"]) is bool
    path = atomic_write_json(tmp_path / "x.json", safe)  # NaN-free: strict JSON accepts it
    assert json.loads(path.read_text())["values"][2] == [1.0, None]


def test_check_finite_json_names_where_the_nan_is():
    import pytest

    from qbc.errors import InvalidValueError
    from qbc.infra.validate import check_finite_json

    check_finite_json({"a": [1.0, np.float32(2)], "b": np.arange(3.0), "c": "nan"}, "metadata")
    with pytest.raises(InvalidValueError, match=r"metadata\.dart\.sigma = nan"):
        check_finite_json({"dart": {"sigma": float("nan")}}, "metadata")
    with pytest.raises(InvalidValueError, match=r"metadata\.x\[1\] \(an array\)"):
        check_finite_json({"x": (0, np.array([np.inf]))}, "metadata")
    with pytest.raises(InvalidValueError, match=r"config\.rate = inf"):
        check_finite_json(_Config(Path("x"), (1,), math.inf), "config")
