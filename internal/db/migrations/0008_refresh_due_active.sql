-- The refresher's due index covers active connections only. Without table
-- statistics PostgreSQL otherwise combines it with the workspace index on
-- status and walks every connection; with the status in the predicate the
-- pass reads only the due entries on both engines.
DROP INDEX connections_refresh_due;
CREATE INDEX connections_refresh_due ON connections (refresh_due_at)
    WHERE refresh_due_at IS NOT NULL AND status = 'active';
