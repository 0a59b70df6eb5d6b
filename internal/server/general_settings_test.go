package server_test

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
)

// scheduleZone reads the time zone a workflow's schedule is kept in.
func (e *env) scheduleZone(t *testing.T, workflowID string) string {
	t.Helper()
	var tz string
	must(t, e.db.Read().QueryRowContext(context.Background(), `SELECT timezone FROM schedule_state WHERE workflow_id = $1`, workflowID).Scan(&tz))
	return tz
}

// General settings: owners and admins change the account's identity and
// defaults in the page and the API, with messages for bad values and
// nothing saved; members get "403 Tenant admin required"; schedules that
// name no time zone follow the account's default; clients see the support
// email; each change is in the audit log.
func TestGeneralSettings(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		owner, admin, member := e.signIn("owner@a.example"), e.signIn("admin@a.example"), e.signIn("member@a.example")
		page := owner.get("/settings/general")
		wantStatus(t, "page", page, 200)
		for _, want := range []string{"Identity", "Defaults", "Danger zone", `name="defaultTimezone"`, `value="UTC"`, `value="365"`} {
			if !strings.Contains(page.Body, want) {
				t.Errorf("settings page lacks %q", want)
			}
		}
		for what, r := range map[string]response{
			"page":     member.get("/settings/general"),
			"form":     member.post("/settings/general", url.Values{"card": {"identity"}, "name": {"Mine"}}),
			"API":      member.api("PATCH", "/api/v1/account", `{"defaultTimezone":"Europe/Berlin"}`),
			"defaults": member.post("/settings/general", url.Values{"card": {"defaults"}, "defaultTimezone": {"Asia/Tokyo"}, "auditRetentionDays": {"90"}}),
		} {
			if r.StatusCode != 403 || !strings.Contains(r.Body, "403 Tenant admin required") {
				t.Errorf("a member changes settings by the %s: %d %.200s", what, r.StatusCode, r.Body)
			}
		}

		// Two workflows on a schedule: one names its time zone, one not.
		base := "/api/v1/workspaces/acme/workflows"
		sched := func(name, tz string) string {
			body := `{"name": "` + name + `", "graph": {"trigger": {"id": "start", "kind": "schedule", "config": {"cron": "0 9 * * 1-5"` + tz + `}},
				"nodes": [{"id": "shape", "kind": "transform", "config": {"output": {"x": "{{ $trigger.scheduledAt }}"}}}], "edges": [{"from": "start", "to": "shape"}]}}`
			d := decodeDetail(t, "create "+name, owner.api("POST", base, body), 201)
			wantStatus(t, "publish "+name, owner.api("POST", base+"/"+d.Workflow.ID+"/publish", ""), 200)
			return d.Workflow.ID
		}
		plain, zoned := sched("Morning", ""), sched("New York morning", `, "timezone": "America/New_York"`)
		if z := e.scheduleZone(t, plain); z != "UTC" {
			t.Fatalf("a schedule without a time zone runs in %q, want the account's default UTC", z)
		}

		bad := []struct{ body, field, message string }{
			{`{"defaultTimezone":"Mars/Olympus"}`, "defaultTimezone", `Unknown time zone \"Mars/Olympus\"`},
			{`{"defaultTimezone":"Local"}`, "defaultTimezone", "Choose a named time zone"},
			{`{"contactEmail":"not an email"}`, "contactEmail", "Enter a valid email address"},
			{`{"supportEmail":"a@"}`, "supportEmail", "Enter a valid email address"},
			{`{"auditRetentionDays":7}`, "auditRetentionDays", "between 30 and 3650 days"},
			{`{"name":""}`, "name", "Name must be 1–100 characters"},
			{`{"name":"Ok","defaultTimezone":"Nowhere"}`, "defaultTimezone", "Unknown time zone"},
		}
		for _, b := range bad {
			res := owner.api("PATCH", "/api/v1/account", b.body)
			if res.StatusCode != 422 || !strings.Contains(res.Body, b.message) || !strings.Contains(res.Body, `"`+b.field+`"`) {
				t.Errorf("PATCH %s: %d %s", b.body, res.StatusCode, res.Body)
			}
		}
		wantAPIError(t, "nothing to change", owner.api("PATCH", "/api/v1/account", `{}`), 422, "Send at least one of")
		wantAPIError(t, "unknown field", owner.api("PATCH", "/api/v1/account", `{"timezone":"UTC"}`), 400, `Unknown field "timezone"`)
		var acct struct {
			Name, ContactEmail, SupportEmail, DefaultTimezone string
			AuditRetentionDays                                int
		}
		res := owner.api("GET", "/api/v1/account", "")
		must(t, json.Unmarshal([]byte(res.Body), &acct))
		if acct.Name != "Agency A" || acct.DefaultTimezone != "UTC" || acct.ContactEmail != "" || acct.AuditRetentionDays != 365 {
			t.Fatalf("refused changes saved something: %+v", acct)
		}

		// The page refuses with the message at the field, keeping the value.
		res = admin.post("/settings/general", url.Values{"card": {"defaults"}, "defaultTimezone": {"Europe/Atlantis"}, "auditRetentionDays": {"90"}})
		wantRedirect(t, "bad zone in the page", res, "/settings/general#defaults")
		page = admin.get("/settings/general")
		if !strings.Contains(page.Body, `Unknown time zone &#34;Europe/Atlantis&#34;`) || !strings.Contains(page.Body, `value="Europe/Atlantis"`) {
			t.Fatalf("the refused zone is not shown at its field: %.3000s", page.Body)
		}
		wantRedirect(t, "defaults", admin.post("/settings/general", url.Values{"card": {"defaults"}, "defaultTimezone": {"Europe/Berlin"}, "auditRetentionDays": {"90"}, "alertEmails": {"on"}}), "/settings/general")
		wantRedirect(t, "identity", admin.post("/settings/general", url.Values{"card": {"identity"}, "name": {"Agency A"}, "contactEmail": {"Ops@A.example"}, "supportEmail": {"help@a.example"}}), "/settings/general")
		res = owner.api("GET", "/api/v1/account", "")
		must(t, json.Unmarshal([]byte(res.Body), &acct))
		if acct.DefaultTimezone != "Europe/Berlin" || acct.ContactEmail != "ops@a.example" || acct.SupportEmail != "help@a.example" || acct.AuditRetentionDays != 90 {
			t.Fatalf("saved settings: %+v", acct)
		}
		if z := e.scheduleZone(t, plain); z != "Europe/Berlin" {
			t.Fatalf("after the default changed, the schedule runs in %q", z)
		}
		if z := e.scheduleZone(t, zoned); z != "America/New_York" {
			t.Fatalf("a schedule naming its zone moved to %q", z)
		}

		// Clients see where to ask.
		client := e.signIn("client@acme.example")
		if p := client.get("/portal"); !strings.Contains(p.Body, `mailto:help@a.example`) {
			t.Fatalf("the portal does not show the support email")
		}

		log := owner.auditLog(t, "?action=account.settings_changed")
		if len(log.Entries) != 2 || log.Entries[1].Detail != "default time zone UTC → Europe/Berlin, audit retention 365 → 90 days" ||
			log.Entries[0].Detail != "contact email, support email" || log.Entries[0].ActorEmail != "admin@a.example" {
			t.Fatalf("audit entries of the settings: %+v", log.Entries)
		}
		other := e.signIn("owner@b.example")
		if l := other.auditLog(t, "?action=account."); len(l.Entries) != 0 {
			t.Fatalf("another account sees this account's settings changes: %+v", l.Entries)
		}
		e.checkNoSecretLeaked()
	})
}
