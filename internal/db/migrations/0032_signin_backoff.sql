-- Sign-in limits slow attackers down without locking anyone out. Failures
-- are counted per (email, address) pair and per address (email ''), never
-- per email alone, so failures from one place do not block the right
-- password from another. Past a few free failures, the next attempt for a
-- key waits from its last failure a time that doubles with each failure.
-- An attempt counts from the moment it is let through (taken back if
-- right), so parallel guesses cannot slip past the count. A key whose last
-- failure is older than the window starts again from nothing.
CREATE TABLE signin_throttle (
    email           TEXT NOT NULL,
    ip              TEXT NOT NULL,
    failures        INTEGER NOT NULL,
    last_failure_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (email, ip)
);
CREATE INDEX signin_throttle_last ON signin_throttle (last_failure_at);

DROP TABLE signin_failures;
