"""What every layer stands on: atomic file writes and run folders (:mod:`qbc.infra.files`),
checking a configuration before it touches anything (:mod:`qbc.infra.validate`), progress bars
(:mod:`qbc.infra.progress`), process-wide settings set for a while and put back
(:mod:`qbc.infra.environ`) and child processes that end with their driver
(:mod:`qbc.infra.child_processes`). Nothing here imports another part of qbc but
:mod:`qbc.errors`."""
