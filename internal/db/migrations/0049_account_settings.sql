-- The account's general settings: where the agency is reached (contact
-- email, for account notices and alert emails) and where its clients get
-- help (support email, shown in the portal), the time zone schedules and
-- digests use when a workflow names none, and how long the audit log keeps
-- its entries.
ALTER TABLE accounts ADD COLUMN contact_email TEXT NOT NULL DEFAULT '';
ALTER TABLE accounts ADD COLUMN support_email TEXT NOT NULL DEFAULT '';
ALTER TABLE accounts ADD COLUMN default_timezone TEXT NOT NULL DEFAULT 'UTC';
ALTER TABLE accounts ADD COLUMN audit_retention_days INTEGER NOT NULL DEFAULT 365;
