"""The token learner against its quantization floor: BC, DART and DAgger per env, quantizer
and seed (:mod:`~qbc.experiments.learner_vs_floor.comparison`), its settings
(:mod:`~qbc.experiments.learner_vs_floor.config`), its summary over seeds
(:mod:`~qbc.experiments.learner_vs_floor.summary`), its README
(:mod:`~qbc.experiments.learner_vs_floor.report`) and the common-tokenizer view of a finished
folder (:mod:`~qbc.experiments.learner_vs_floor.views`)."""
