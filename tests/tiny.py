"""The tiny sizes the tests train at, declared once: test modules import them (``tests/`` is on
the path through pyproject's ``[tool.pytest.ini_options] pythonpath``) and conftest.py turns
them into fixtures (``tiny_model``, ``tiny_model_flags``)."""

#: The smallest transformer the tests train: fields of ``qbc.policy.ModelConfig``.
TINY_MODEL = {"d_model": 16, "n_layers": 1, "n_heads": 2}

#: The same model as flags of ``qbc train`` (and of every command that trains one).
TINY_MODEL_FLAGS = ("--model.d-model", "16", "--model.n-layers", "1", "--model.n-heads", "2")

#: One small setting of each chunk tokenizer kind: ``make_chunk_tokenizer(kind, **settings)``.
TINY_CHUNK_TOKENIZERS = {"fast": {"vocab_size": 64}, "rvq": {"codes": 8, "levels": 2},
                         "beast": {"n_control_points": 3, "degree": 2, "bins": 16},
                         "per-step": {"n_bins": 16}}
