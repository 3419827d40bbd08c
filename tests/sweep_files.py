"""A tiny sweep file the sweep-validation tests edit (tests/sweep/test_sweep_validation.py,
tests/cli/test_round_three_reliab8.py): one env, 8 bins, 4 demonstrations, 5 training steps of
the tiny transformer, 4 evaluation episodes."""

from qbc.sweep.spec import tomllib

BASE = """
[grid]
envs = ["qbc/ScalarStable-v0"]
bins = 8
n_demos = 4
horizons = [10]

[data]
episode_steps = 20

[train]
policies = ["ar-transformer"]
steps = 5
model = {d_model = 16, n_layers = 1, n_heads = 2}

[rollout]
episodes = 4
num_envs = 4
"""


def sweep_doc(**edits):
    """:data:`BASE` as a dict with ``table__key=value`` edits applied."""
    doc = tomllib.loads(BASE)
    for path, value in edits.items():
        table, key = path.split("__")
        doc[table][key] = value
    return doc
