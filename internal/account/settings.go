package account

import (
	"context"
	"fmt"
	"strings"
	"time"

	"taskjuice/internal/db"
)

// AuditSettingsChanged records a change of the account's general settings.
const AuditSettingsChanged = "account.settings_changed"

// Bounds of the audit log's retention, in days.
const (
	MinAuditRetentionDays = 30
	MaxAuditRetentionDays = 3650
)

// SettingsChange is a change of the account's general settings: a nil
// field is left as it is.
type SettingsChange struct {
	Name, ContactEmail, SupportEmail, DefaultTimezone *string
	AuditRetentionDays                                *int
	AlertEmails                                       *bool
}

// Empty reports whether the change names no setting.
func (c SettingsChange) Empty() bool {
	return c.Name == nil && c.ContactEmail == nil && c.SupportEmail == nil && c.DefaultTimezone == nil &&
		c.AuditRetentionDays == nil && c.AlertEmails == nil
}

// ValidateTimezone checks an IANA time zone name and returns it trimmed.
func ValidateTimezone(tz string) (string, error) {
	tz = strings.TrimSpace(tz)
	if tz == "" || tz == "Local" {
		return "", invalid("defaultTimezone", "Choose a named time zone such as Europe/Berlin or UTC")
	}
	if _, err := time.LoadLocation(tz); err != nil {
		return "", invalid("defaultTimezone", fmt.Sprintf("Unknown time zone %q; use an IANA name such as Europe/Berlin, America/New_York or UTC", tz))
	}
	return tz, nil
}

// optionalEmail checks an email setting that may be left empty.
func optionalEmail(field, v string) (string, error) {
	if strings.TrimSpace(v) == "" {
		return "", nil
	}
	e, err := NormalizeEmail(v)
	if err != nil {
		return "", invalid(field, "Enter a valid email address, like name@example.com, or leave it empty")
	}
	return e, nil
}

// apply checks c and writes its values over a; it names each setting it
// changes, for the audit log.
func (c SettingsChange) apply(a *Account) ([]string, error) {
	var changed []string
	set := func(label string, dst *string, v string) {
		if *dst != v {
			changed = append(changed, label)
			*dst = v
		}
	}
	if c.Name != nil {
		if err := ValidateName(*c.Name); err != nil {
			return nil, err
		}
		set("name", &a.Name, strings.TrimSpace(*c.Name))
	}
	for _, f := range []struct {
		in          *string
		field, name string
		dst         *string
	}{{c.ContactEmail, "contactEmail", "contact email", &a.ContactEmail}, {c.SupportEmail, "supportEmail", "support email", &a.SupportEmail}} {
		if f.in == nil {
			continue
		}
		e, err := optionalEmail(f.field, *f.in)
		if err != nil {
			return nil, err
		}
		set(f.name, f.dst, e)
	}
	if c.DefaultTimezone != nil {
		tz, err := ValidateTimezone(*c.DefaultTimezone)
		if err != nil {
			return nil, err
		}
		if tz != a.DefaultTimezone {
			changed = append(changed, "default time zone "+a.DefaultTimezone+" → "+tz)
			a.DefaultTimezone = tz
		}
	}
	if d := c.AuditRetentionDays; d != nil {
		if *d < MinAuditRetentionDays || *d > MaxAuditRetentionDays {
			return nil, invalid("auditRetentionDays", fmt.Sprintf("Keep audit entries between %d and %d days", MinAuditRetentionDays, MaxAuditRetentionDays))
		}
		if *d != a.AuditRetentionDays {
			changed = append(changed, fmt.Sprintf("audit retention %d → %d days", a.AuditRetentionDays, *d))
			a.AuditRetentionDays = *d
		}
	}
	if c.AlertEmails != nil && *c.AlertEmails != a.AlertEmails {
		changed = append(changed, map[bool]string{true: "alert emails on", false: "alert emails off"}[*c.AlertEmails])
		a.AlertEmails = *c.AlertEmails
	}
	return changed, nil
}

// UpdateSettings changes the account's general settings (owners and
// admins), recording what changed in the audit log in the same
// transaction. Functions registered with OnTimezoneChange run after a new
// default time zone is saved.
func (s *Service) UpdateSettings(ctx context.Context, p Principal, c SettingsChange) (Account, error) {
	if !p.Can(CapManageWorkspaces) {
		return Account{}, errAdminRequired
	}
	a, err := s.Account(ctx, p.AccountID)
	if err != nil {
		return Account{}, err
	}
	before := a.DefaultTimezone
	changed, err := c.apply(&a)
	if err != nil || len(changed) == 0 {
		return a, err
	}
	err = s.db.InTx(ctx, func(tx db.Querier) error {
		_, err := tx.ExecContext(ctx, `UPDATE accounts SET name = $1, contact_email = $2, support_email = $3, default_timezone = $4,
			audit_retention_days = $5, alert_emails = $6 WHERE id = $7`,
			a.Name, a.ContactEmail, a.SupportEmail, a.DefaultTimezone, a.AuditRetentionDays, a.AlertEmails, a.ID)
		if err != nil {
			return fmt.Errorf("save account settings: %w", err)
		}
		return s.auditBy(ctx, tx, p, AuditSettingsChanged, a.Name, strings.Join(changed, ", "))
	})
	if err != nil {
		return Account{}, err
	}
	if a.DefaultTimezone != before {
		for _, fn := range s.tzHooks {
			fn(ctx, a.ID)
		}
	}
	return a, nil
}

// OnTimezoneChange registers a function called after an account's default
// time zone changed (schedules that name none follow it). Register before
// serving; the list is not guarded.
func (s *Service) OnTimezoneChange(fn func(ctx context.Context, accountID string)) {
	s.tzHooks = append(s.tzHooks, fn)
}

// WorkspaceTimezone is the default time zone of the workspace's account.
func WorkspaceTimezone(ctx context.Context, q db.Querier, workspaceID string) (string, error) {
	var tz string
	err := q.QueryRowContext(ctx, `SELECT a.default_timezone FROM workspaces w JOIN accounts a ON a.id = w.account_id WHERE w.id = $1`, workspaceID).Scan(&tz)
	if err != nil {
		return "", fmt.Errorf("read the account's time zone: %w", err)
	}
	return tz, nil
}
