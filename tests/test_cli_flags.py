"""The flag conventions every command shares: comma lists and renamed flags."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from qbc.cli import (
    Command,
    DeprecatedFlagWarning,
    _parse_flags,
    list_flags,
    rename_flags,
    split_comma_lists,
)


@dataclass
class _Config:
    horizons: tuple[int, ...] = (10,)
    names: tuple[str, ...] | None = None
    dataset: str = "d"
    seed: int = 0


def test_list_flags_are_the_tuple_fields():
    assert list_flags(_Config) == {"--horizons", "--names"}


def test_comma_form_is_split_and_other_flags_untouched():
    args = ["--horizons", "10,50", "200", "--dataset", "a,b", "--names=x,y", "--seed", "-1"]
    assert split_comma_lists(args, {"--horizons", "--names"}) == [
        "--horizons", "10", "50", "200", "--dataset", "a,b", "--names", "x", "y",
        "--seed", "-1"]


def test_old_flag_spelling_warns_and_is_renamed():
    with pytest.warns(DeprecatedFlagWarning, match="--dataset-id is deprecated.*--dataset"):
        out = rename_flags(["--dataset-id=x", "--seed", "1"], {"--dataset-id": "--dataset"})
    assert out == ["--dataset=x", "--seed", "1"]


def test_parse_flags_applies_both_conventions():
    command = Command(_Config, run=lambda c: c, help="test",
                      renamed_flags={"--dataset-id": "--dataset"})
    with pytest.warns(DeprecatedFlagWarning):
        cfg = _parse_flags(command, ["--horizons", "5,6", "--dataset-id", "q"], "test")
    assert cfg.horizons == (5, 6) and cfg.dataset == "q"
