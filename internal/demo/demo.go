// Package demo creates the demo agency on a fresh install, so a newcomer can
// sign in at once and see the product with something in it.
package demo

import (
	"context"
	"fmt"
	"io"

	"taskjuice/internal/account"
	"taskjuice/internal/apperr"
	"taskjuice/internal/db"
)

// Demo identities.
const (
	AccountName   = "Demo Agency"
	OwnerEmail    = "owner@demo-agency.example"
	OwnerName     = "Demo Owner"
	WorkspaceName = "Acme Corp"
	WorkspaceSlug = "acme"
	factKey       = "demo_created"
)

// Result says what Seed did.
type Result struct {
	Created  bool
	Password string // set only when Created
}

// Seed creates the demo account, its owner and the acme workspace when the
// database has no account at all and the demo was never created before (so
// deleting it, or starting again, never brings a second one). The owner's
// password is generated and returned; it is printed once by the caller.
func Seed(ctx context.Context, d *db.DB, accounts *account.Service) (Result, error) {
	var n int
	if err := d.Read().QueryRowContext(ctx, `SELECT
		(SELECT count(*) FROM accounts) + (SELECT count(*) FROM install_facts WHERE key = $1)`, factKey).Scan(&n); err != nil {
		return Result{}, fmt.Errorf("check for demo: %w", err)
	}
	if n > 0 {
		return Result{}, nil
	}
	password := account.GeneratePassword()
	acct, _, err := accounts.CreateAccount(ctx, AccountName, account.NewUser{Email: OwnerEmail, Name: OwnerName, Password: password})
	if e, ok := apperr.As(err); ok && e.Code == "email_taken" {
		// Another process sharing the database created it a moment ago.
		return Result{}, nil
	}
	if err != nil {
		return Result{}, fmt.Errorf("create demo account: %w", err)
	}
	if _, err := accounts.CreateWorkspaceForAccount(ctx, acct.ID, WorkspaceName, WorkspaceSlug); err != nil {
		return Result{}, fmt.Errorf("create demo workspace: %w", err)
	}
	_, err = d.Write().ExecContext(ctx, `INSERT INTO install_facts (key, value, created_at) VALUES ($1, $2, $3)`, factKey, acct.ID, db.Now())
	if err != nil && !db.IsUniqueViolation(err) {
		return Result{}, fmt.Errorf("record demo: %w", err)
	}
	return Result{Created: true, Password: password}, nil
}

// PrintWelcome writes the sign-in details of a freshly created demo.
func PrintWelcome(w io.Writer, baseURL, password string) {
	fmt.Fprintf(w, `
  TaskJuice is ready. Sign in at %s/signin
    email:    %s
    password: %s
  This password is shown once. To set a new one:
    taskjuice reset-password --email %s

`, baseURL, OwnerEmail, password, OwnerEmail)
}
