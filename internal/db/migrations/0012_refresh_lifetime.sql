-- When the stored refresh token was issued and last used, so TaskJuice can
-- warn before an app's known refresh-token lifetime runs out.
ALTER TABLE connections ADD COLUMN refresh_issued_at TIMESTAMPTZ;
ALTER TABLE connections ADD COLUMN refresh_used_at TIMESTAMPTZ;
CREATE UNIQUE INDEX notifications_one_open_expiring ON notifications (connection_id) WHERE kind = 'expiring' AND resolved_at IS NULL;
