"""Interactive imitation: DAgger's rounds (:mod:`qbc.interactive.dagger`), its settings
(:mod:`qbc.interactive.config`), its run folder's files (:mod:`qbc.interactive.run_files`) and
where a run writes (:mod:`qbc.interactive.staging`).

DART's noise is injected while collecting, so it lives with collection (:mod:`qbc.data.dart`):
here it would make data collection depend on a layer above it."""
