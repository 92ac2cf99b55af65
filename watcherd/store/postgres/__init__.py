"""watcherd's PostgreSQL store (`store.url: postgresql://...`), for several daemons.

Needs the optional extra `watcherd[postgres]` (psycopg 3). Modules: `schema`
(migrations), `writer`, `outbox`, `readers` (transaction bodies and queries), `core`
(PgStore, the same interface as the SQLite Store).
"""
