package connection_test

import (
	"context"
	"testing"

	"taskjuice/internal/apperr"
	"taskjuice/internal/connection"
	"taskjuice/internal/db"
	"taskjuice/internal/db/dbtest"
)

// A polling trigger reads the connection's non-secret fields (Freshdesk's
// subdomain), never its secret.
func TestFieldsOf(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		ctx := context.Background()
		c, err := f.svc.CreateWithCredential(ctx, f.acme, connection.New{AppKey: "freshdesk", Label: "Help", Status: connection.StatusActive,
			Metadata: map[string]string{"subdomain": "acme"}},
			connection.Credential{APIKey: "fdkey", Fields: map[string]string{"apiKey": "fdkey"}}, connection.System)
		if err != nil {
			t.Fatal(err)
		}
		fields, err := f.svc.FieldsOf(ctx, c.ID)
		if err != nil || fields["subdomain"] != "acme" {
			t.Fatalf("fields: got %v, %v; want subdomain acme", fields, err)
		}
		for k, v := range fields {
			if v == "fdkey" {
				t.Fatalf("field %s carries the API key", k)
			}
		}
		if _, err := f.svc.FieldsOf(ctx, "no-such-connection"); !apperr.IsNotFound(err) {
			t.Fatalf("missing connection: got %v, want not found", err)
		}
	})
}
