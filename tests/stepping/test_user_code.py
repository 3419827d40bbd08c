"""The boundary around a user's own actor (``qbc rollout --policy module:object``): whatever the
user's code does wrong ends in one line naming the object and what it did, exit 2 (not an
internal error), and nothing is written."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from qbc.cli import main
from qbc.errors import UserCodeError
from qbc.stepping.actor import UserActor, load_actor

SCALAR = "qbc/ScalarStable-v0"  # obs (1,), action (1,)

#: module name -> (source, object, words the one-line error must hold)
CASES = {
    "uc_syntax": ("def broken(:\n", "Actor", ["has a syntax error", "line 1"]),
    "uc_import_raises": ("raise RuntimeError('no GPU here')\n", "Actor",
                         ["importing 'uc_import_raises' failed", "RuntimeError: no GPU here"]),
    "uc_missing_dep": ("import no_such_dependency_qbc\n", "Actor",
                       ["importing 'uc_missing_dep' failed", "no_such_dependency_qbc"]),
    "uc_needs_args": ("class Actor:\n    def __init__(self, path):\n        pass\n"
                      "    def act(self, obs):\n        return obs\n", "Actor",
                      ["callable with no arguments", "path"]),
    "uc_factory_raises": ("def Actor():\n    raise ValueError('bad weights')\n", "Actor",
                          ["calling it raised ValueError: bad weights"]),
    "uc_act_raises": ("class Actor:\n    def act(self, obs):\n        return 1 / 0\n", "Actor",
                      ["act raised ZeroDivisionError"]),
    "uc_act_strings": ("class Actor:\n    def act(self, obs):\n"
                       "        return [['left'] for _ in obs]\n", "Actor",
                       ["act returned actions of dtype <U4", "must return numbers"]),
    "uc_act_nan": ("import numpy as np\nclass Actor:\n    def act(self, obs):\n"
                   "        return np.full((len(obs), 1), np.nan)\n", "Actor",
                   ["act returned 2 non-finite action values", "must be finite"]),
    "uc_act_beyond_float32": ("import numpy as np\nclass Actor:\n    def act(self, obs):\n"
                              "        return np.full((len(obs), 1), 1e300)\n", "Actor",
                              ["act returned 2 action values beyond the float32 range"]),
    "uc_act_ragged": ("class Actor:\n    def act(self, obs):\n"
                      "        return [[0.0], [0.0, 1.0]][:len(obs)]\n", "Actor",
                      ["act returned something that is not an array"]),
    "uc_act_wide": ("import numpy as np\nclass Actor:\n    def act(self, obs):\n"
                    "        return np.zeros((len(obs), 3))\n", "Actor",
                    ["act returned actions of shape (2, 3) for 2 observations",
                     "expected (2, 1)"]),
    "uc_reset_raises": ("import numpy as np\nclass Actor:\n    def reset(self):\n"
                        "        raise KeyError('h')\n    def act(self, obs):\n"
                        "        return np.zeros((len(obs), 1))\n", "Actor",
                        ["reset raised KeyError"]),
    "uc_late_nan": ("import numpy as np\nclass Actor:\n    calls = 0\n"
                    "    def act(self, obs):\n        self.calls += 1\n"
                    "        return np.full((len(obs), 1), np.nan if self.calls > 3 else 0.0)\n",
                    "Actor", ["non-finite action values"]),
    # a BaseException of the user's own ended in a traceback (exit 1); an act property or a
    # __getattr__ that raises, in an internal error
    "uc_base_exception": ("class Stop(BaseException):\n    pass\nclass Actor:\n"
                          "    def act(self, obs):\n        raise Stop('halt')\n", "Actor",
                          ["act raised Stop: halt"]),
    "uc_act_property_raises": ("class Actor:\n    @property\n    def act(self):\n"
                               "        raise RuntimeError('no act yet')\n", "Actor",
                               ["reading its act raised RuntimeError: no act yet"]),
    "uc_getattr_raises": ("import numpy as np\nclass Actor:\n    def __getattr__(self, name):\n"
                          "        raise ValueError(name)\n    def act(self, obs):\n"
                          "        return np.zeros((len(obs), 1))\n", "Actor",
                          ["raised ValueError"]),
    "uc_exit_in_reset": ("import sys\nimport numpy as np\nclass Actor:\n    def reset(self):\n"
                         "        sys.exit(3)\n    def act(self, obs):\n"
                         "        return np.zeros((len(obs), 1))\n", "Actor",
                         ["reset raised SystemExit: 3"]),
}


@pytest.fixture
def user_modules(tmp_path, monkeypatch):
    folder = tmp_path / "user_code"
    folder.mkdir()
    for name, (source, _, _) in CASES.items():
        (folder / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(folder))
    return folder


@pytest.mark.parametrize("module", sorted(CASES))
def test_a_faulty_user_actor_is_one_line_exit_2_and_nothing_written(
        tmp_path, capsys, user_modules, module):
    _, obj, words = CASES[module]
    spec = f"{module}:{obj}"
    out = tmp_path / "out" / "roll"
    code = main(["rollout", "--policy", spec, "--env", SCALAR, "--episodes", "4",
                 "--horizons", "10", "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.count("\n") == 0 and "internal error" not in err, err
    assert spec in err and all(w in err for w in words), err
    assert not (tmp_path / "out").exists()


def test_the_python_loader_raises_user_code_error(user_modules):
    with pytest.raises(UserCodeError, match="syntax error"):
        load_actor("uc_syntax:Actor")
    actor = load_actor("uc_act_nan:Actor", act_dim=1)
    assert isinstance(actor, UserActor)
    with pytest.raises(UserCodeError, match="non-finite"):
        actor.act(np.zeros((3, 1), np.float32))


def test_a_good_user_actor_passes_through_unchanged():
    class Good:
        def act(self, obs):
            return np.ones((len(obs), 2), np.float64)

    actor = UserActor(Good(), "m:Good", act_dim=2)
    out = actor.act(np.zeros((4, 3)))
    assert out.shape == (4, 2) and out.dtype == np.float64
    with pytest.raises(UserCodeError, match=r"expected \(4, 1\)"):
        UserActor(Good(), "m:Good", act_dim=1).act(np.zeros((4, 3)))
