-- Each engine process keeps a heartbeat row while it runs. A process whose
-- heartbeat is older than a few seconds is gone (killed, or its machine
-- lost): the others take its runs' leases over at once instead of waiting
-- for them to lapse. Leased runs are few (those being worked on right
-- now), so a partial index finds a process's leases without a scan.
CREATE TABLE engine_processes (
    owner        TEXT PRIMARY KEY,
    started_at   TIMESTAMPTZ NOT NULL,
    heartbeat_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX runs_leased ON runs (lease_owner) WHERE lease_until IS NOT NULL;
