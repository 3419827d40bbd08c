"""Interactive imitation: DART's noise level fitted to a trained policy
(:mod:`qbc.interactive.dart`) and DAgger's rounds (:mod:`qbc.interactive.dagger`; its settings
in :mod:`qbc.interactive.config`, its run folder's files in :mod:`qbc.interactive.run_files`,
where a run writes in :mod:`qbc.interactive.staging`)."""
