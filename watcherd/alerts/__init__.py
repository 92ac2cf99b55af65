"""Early warning: rules evaluated on every poll from what the poller already fetched.

- `rules`: the five rules (nonfinite, diverging, stalled, queued_long, overrun) as pure
  functions of a job's rule memory, its status and the clock;
- `state`: that memory (`AlertState`), stored in the job's row with each page;
- `eta`: when a job should finish, and where the estimate came from;
- `episodes`: one evaluation: new rows in, episodes opened and resolved, a cancel decided;
- `events`: alert event names, stable ids, and which hooks subscribe to them.

Nothing here does I/O; it imports only `config` and `model`. `watch` composes it
with the API client and the store. Import from the modules: this package's
`__init__` loads nothing, so the CLI's readers (which import the store) stay quick.
"""
