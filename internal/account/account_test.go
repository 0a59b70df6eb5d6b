package account_test

import (
	"context"
	"testing"

	"taskjuice/internal/account"
	"taskjuice/internal/apperr"
	"taskjuice/internal/db"
	"taskjuice/internal/db/dbtest"
)

const pw = "correct horse battery"

type fixture struct {
	svc    *account.Service
	db     *db.DB
	owner  account.Principal
	admin  account.Principal
	member account.Principal
}

func setup(t *testing.T, d *db.DB) fixture {
	t.Helper()
	ctx := context.Background()
	svc := account.NewService(d)
	acct, _, err := svc.CreateAccount(ctx, "Agency A", account.NewUser{Email: "Owner@A.example", Name: "Olive", Password: pw})
	if err != nil {
		t.Fatalf("create account: %v", err)
	}
	if _, err := svc.CreateStaff(ctx, acct.ID, account.NewUser{Email: "admin@a.example", Password: pw}, account.RoleAdmin); err != nil {
		t.Fatalf("create admin: %v", err)
	}
	if _, err := svc.CreateStaff(ctx, acct.ID, account.NewUser{Email: "member@a.example", Password: pw}, account.RoleMember); err != nil {
		t.Fatalf("create member: %v", err)
	}
	f := fixture{svc: svc, db: d}
	f.owner = mustPrincipal(t, svc, "owner@a.example")
	f.admin = mustPrincipal(t, svc, "admin@a.example")
	f.member = mustPrincipal(t, svc, "member@a.example")
	return f
}

func mustPrincipal(t *testing.T, svc *account.Service, email string) account.Principal {
	t.Helper()
	p, err := svc.PrincipalByEmail(context.Background(), email)
	if err != nil {
		t.Fatalf("principal %s: %v", email, err)
	}
	return p
}

func count(t *testing.T, d *db.DB, table string) int {
	t.Helper()
	var n int
	if err := d.Read().QueryRowContext(context.Background(), `SELECT count(*) FROM `+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestCreateAccountHasExactlyOneOwner(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		if f.owner.Role != account.RoleOwner {
			t.Fatalf("owner role: got %q, want %q", f.owner.Role, account.RoleOwner)
		}
		if f.owner.User.Email != "owner@a.example" {
			t.Fatalf("email not normalized: got %q", f.owner.User.Email)
		}
		// A second owner is impossible at the database level too.
		_, err := d.Write().ExecContext(context.Background(),
			`UPDATE account_members SET role = 'account-owner' WHERE user_id = $1`, f.admin.User.ID)
		if !db.IsUniqueViolation(err) {
			t.Fatalf("second owner: got %v, want a unique violation", err)
		}
	})
}

func TestCreateAccountLeavesNothingHalfWritten(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		before := count(t, d, "accounts")
		_, _, err := f.svc.CreateAccount(context.Background(), "Agency B", account.NewUser{Email: "owner@a.example", Password: pw})
		if e, ok := apperr.As(err); !ok || e.Code != "email_taken" {
			t.Fatalf("duplicate owner email: got %v, want email_taken", err)
		}
		if after := count(t, d, "accounts"); after != before {
			t.Fatalf("accounts after failed create: got %d, want %d", after, before)
		}
	})
}

func TestTransferOwnership(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		ctx := context.Background()
		if err := f.svc.TransferOwnership(ctx, f.admin, f.member.User.ID); !apperr.Is(err, apperr.KindForbidden) {
			t.Fatalf("admin transfers: got %v, want forbidden", err)
		}
		if err := f.svc.TransferOwnership(ctx, f.owner, f.member.User.ID); !apperr.Is(err, apperr.KindInvalid) {
			t.Fatalf("transfer to a member: got %v, want invalid (an admin only)", err)
		}
		if err := f.svc.TransferOwnership(ctx, f.owner, f.admin.User.ID); err != nil {
			t.Fatalf("transfer: %v", err)
		}
		if got := mustPrincipal(t, f.svc, "admin@a.example").Role; got != account.RoleOwner {
			t.Fatalf("new owner role: got %q, want %q", got, account.RoleOwner)
		}
		if got := mustPrincipal(t, f.svc, "owner@a.example").Role; got != account.RoleAdmin {
			t.Fatalf("old owner role: got %q, want %q", got, account.RoleAdmin)
		}
	})
}

func TestCapabilities(t *testing.T) {
	tests := []struct {
		role account.Role
		cap  account.Capability
		want bool
	}{
		{account.RoleOwner, account.CapDeleteAccount, true},
		{account.RoleOwner, account.CapBilling, true},
		{account.RoleAdmin, account.CapManageWorkspaces, true},
		{account.RoleAdmin, account.CapInviteTeammate, true},
		{account.RoleAdmin, account.CapBilling, false},
		{account.RoleAdmin, account.CapTransferOwnership, false},
		{account.RoleAdmin, account.CapDeleteAccount, false},
		{account.RoleMember, account.CapRead, true},
		{account.RoleMember, account.CapWrite, true},
		{account.RoleMember, account.CapManageWorkspaces, false},
		{account.RoleMember, account.CapInviteTeammate, false},
		{account.RoleClient, account.CapRead, true},
		{account.RoleClient, account.CapWrite, false},
	}
	for _, tt := range tests {
		if got := tt.role.Can(tt.cap); got != tt.want {
			t.Errorf("%s can %s: got %v, want %v", tt.role, tt.cap, got, tt.want)
		}
	}
}

func TestWorkspaceSlugRules(t *testing.T) {
	tests := []struct {
		slug string
		want string // "" means valid
	}{
		{"acme", ""},
		{"a1", ""},
		{"acme-corp-2", ""},
		{"a", account.MsgSlugInvalid},
		{"-acme", account.MsgSlugInvalid},
		{"acme-", account.MsgSlugInvalid},
		{"Acme", account.MsgSlugInvalid},
		{"acme_corp", account.MsgSlugInvalid},
		{"acme corp", account.MsgSlugInvalid},
		{"ä-b", account.MsgSlugInvalid},
		{"abcdefghijabcdefghijabcdefghijabcdefghijabcdefghij", ""},
		{"abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijk", account.MsgSlugInvalid},
		{"dashboard", account.MsgSlugReserved},
		{"portal", account.MsgSlugReserved},
	}
	for _, tt := range tests {
		err := account.ValidateSlug(tt.slug)
		got := ""
		if e, ok := apperr.As(err); ok {
			got = e.Message
		} else if err != nil {
			got = err.Error()
		}
		if got != tt.want {
			t.Errorf("ValidateSlug(%q): got %q, want %q", tt.slug, got, tt.want)
		}
	}
}

func TestCreateWorkspace(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		ctx := context.Background()
		if _, err := f.svc.CreateWorkspace(ctx, f.member, "Acme", "acme"); !apperr.Is(err, apperr.KindForbidden) {
			t.Fatalf("member creates workspace: got %v, want forbidden", err)
		}
		w, err := f.svc.CreateWorkspace(ctx, f.admin, "  Acme Inc  ", "acme")
		if err != nil {
			t.Fatalf("admin creates workspace: %v", err)
		}
		if w.Name != "Acme Inc" {
			t.Fatalf("name: got %q, want %q", w.Name, "Acme Inc")
		}
		_, err = f.svc.CreateWorkspace(ctx, f.owner, "Other", "acme")
		if e, ok := apperr.As(err); !ok || e.Message != account.MsgSlugTaken {
			t.Fatalf("taken slug: got %v, want %q", err, account.MsgSlugTaken)
		}
		if err := f.svc.CheckSlug(ctx, f.owner, "acme"); err == nil || err.Error() != "slug: "+account.MsgSlugTaken {
			t.Fatalf("CheckSlug taken: got %v", err)
		}
		if err := f.svc.CheckSlug(ctx, f.owner, "beta"); err != nil {
			t.Fatalf("CheckSlug free: got %v, want nil", err)
		}
		_, err = f.svc.CreateWorkspace(ctx, f.owner, "", "x")
		if err == nil || !apperr.Is(err, apperr.KindInvalid) {
			t.Fatalf("empty name and short slug: got %v, want invalid", err)
		}
		if n := count(t, d, "workspaces"); n != 1 {
			t.Fatalf("workspaces: got %d, want 1", n)
		}
		// The same slug in another account is fine: slugs are unique per account.
		_, _, err = f.svc.CreateAccount(ctx, "Agency B", account.NewUser{Email: "owner@b.example", Password: pw})
		if err != nil {
			t.Fatal(err)
		}
		ownerB := mustPrincipal(t, f.svc, "owner@b.example")
		if _, err := f.svc.CreateWorkspace(ctx, ownerB, "Acme at B", "acme"); err != nil {
			t.Fatalf("same slug in another account: %v", err)
		}
	})
}

func TestWorkspaceIsolation(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		ctx := context.Background()
		wa, err := f.svc.CreateWorkspace(ctx, f.owner, "Acme", "acme")
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := f.svc.CreateAccount(ctx, "Agency B", account.NewUser{Email: "owner@b.example", Password: pw}); err != nil {
			t.Fatal(err)
		}
		ownerB := mustPrincipal(t, f.svc, "owner@b.example")
		if _, err := f.svc.WorkspaceBySlug(ctx, ownerB, "acme"); !apperr.IsNotFound(err) {
			t.Fatalf("account B reads A's workspace by slug: got %v, want not found", err)
		}
		if _, err := f.svc.WorkspaceByID(ctx, ownerB, wa.ID); !apperr.IsNotFound(err) {
			t.Fatalf("account B reads A's workspace by id: got %v, want not found", err)
		}
		ws, err := f.svc.Workspaces(ctx, ownerB)
		if err != nil || len(ws) != 0 {
			t.Fatalf("account B lists workspaces: got %d, %v; want 0", len(ws), err)
		}
		if _, err := f.svc.Members(ctx, ownerB, wa); !apperr.IsNotFound(err) {
			t.Fatalf("account B lists A's members: got %v, want not found", err)
		}

		// A client sees only their own workspace.
		wb, err := f.svc.CreateWorkspace(ctx, f.owner, "Beta", "beta")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.CreateClient(ctx, wa.ID, account.NewUser{Email: "client@acme.example", Password: pw}); err != nil {
			t.Fatal(err)
		}
		client := mustPrincipal(t, f.svc, "client@acme.example")
		if client.Role != account.RoleClient || client.WorkspaceID != wa.ID {
			t.Fatalf("client principal: got role %q workspace %q", client.Role, client.WorkspaceID)
		}
		if _, err := f.svc.WorkspaceBySlug(ctx, client, wb.Slug); !apperr.IsNotFound(err) {
			t.Fatalf("client reads another workspace: got %v, want not found", err)
		}
		ws, err = f.svc.Workspaces(ctx, client)
		if err != nil || len(ws) != 1 || ws[0].ID != wa.ID {
			t.Fatalf("client lists workspaces: got %+v, %v", ws, err)
		}
		members, err := f.svc.Members(ctx, f.owner, wa)
		if err != nil {
			t.Fatal(err)
		}
		if len(members) != 4 || members[0].Role != account.RoleOwner || members[3].Role != account.RoleClient {
			t.Fatalf("members: got %+v", members)
		}
		if members, _ := f.svc.Members(ctx, f.owner, wb); len(members) != 3 {
			t.Fatalf("members of beta: got %d, want 3 (no client)", len(members))
		}
	})
}

func TestInvitationsListed(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		ctx := context.Background()
		w, err := f.svc.CreateWorkspace(ctx, f.owner, "Acme", "acme")
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := f.svc.CreateInvitation(ctx, f.member, "new@a.example", account.RoleMember, ""); !apperr.Is(err, apperr.KindForbidden) {
			t.Fatalf("member invites teammate: got %v, want forbidden", err)
		}
		secret, inv, err := f.svc.CreateInvitation(ctx, f.member, "Client@Acme.example", account.RoleClient, w.ID)
		if err != nil {
			t.Fatalf("member invites client: %v", err)
		}
		if secret == "" || inv.Email != "client@acme.example" {
			t.Fatalf("invitation: got %+v", inv)
		}
		list, err := f.svc.PendingInvitations(ctx, f.owner, w)
		if err != nil || len(list) != 1 || list[0].ID != inv.ID {
			t.Fatalf("pending invitations: got %+v, %v", list, err)
		}
	})
}
