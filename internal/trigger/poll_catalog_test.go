package trigger

import (
	"context"
	"strings"
	"testing"

	"taskjuice/internal/catalog"
)

// Every poll trigger the catalog offers has a source that reads it, its
// app's scopes read what it polls, and its reads go to the app's own hosts.
func TestEveryCatalogPollTriggerCanPoll(t *testing.T) {
	cat, err := catalog.Load(catalog.Options{Getenv: func(string) string { return "" }, SandboxURL: "http://sandbox.test/sandbox"})
	if err != nil {
		t.Fatal(err)
	}
	readScopes := map[string]string{
		"gmail":         "gmail.readonly",
		"google-sheets": "auth/spreadsheets",
		"hubspot":       "crm.objects.contacts.read",
		"microsoft-365": "Mail.Read",
	}
	n := 0
	for _, app := range cat.Apps() {
		for _, tr := range app.Triggers {
			if tr.Mode != catalog.TriggerPoll {
				continue
			}
			n++
			if !CanPoll(app.Key, tr.Key) {
				t.Errorf("%s %q is offered, but nothing polls it", app.Name, tr.Name)
			}
			if want, ok := readScopes[app.Key]; ok && !strings.Contains(app.ScopeString(), want) {
				t.Errorf("%s scopes %q, want one that reads (%s)", app.Name, app.ScopeString(), want)
			}
		}
	}
	if n < 7 {
		t.Fatalf("got %d poll triggers in the catalog, want at least 7", n)
	}
}

// A Freshdesk connection without a subdomain is a clear error, not a
// request to nowhere.
func TestPollFreshdeskNeedsTheSubdomain(t *testing.T) {
	cat, err := catalog.Load(catalog.Options{Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	app, _ := cat.App("freshdesk")
	for _, fields := range []map[string]string{nil, {"subdomain": "evil.com#"}} {
		_, _, err := freshdeskTickets{}.latest(context.Background(), pollCall{app: app, fields: fields, api: &fakeApp{}}, 0)
		if err == nil || !strings.Contains(err.Error(), "no Freshdesk subdomain") {
			t.Fatalf("fields %v: got %v, want the missing subdomain named", fields, err)
		}
	}
}
