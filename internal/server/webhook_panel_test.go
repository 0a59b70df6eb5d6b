package server_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"taskjuice/internal/db"
	"taskjuice/internal/db/dbtest"
	"taskjuice/internal/workflow"
)

var webhookSecretPattern = regexp.MustCompile(`whsec_[0-9a-f]{64}`)

// The trigger panel generates the webhook's secret, shows it there (and
// nowhere else), and regenerates it: from then on only the new one
// authenticates.
func TestWebhookPanelGeneratesSecret(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		e := setup(t, d)
		ctx := context.Background()
		g := workflow.Graph{Schema: 1,
			Trigger: &workflow.Node{ID: "start", Kind: workflow.TriggerWebhook, Config: json.RawMessage(`{"auth":"hmac-sha256","header":"X-Signature"}`)},
			Nodes:   []workflow.Node{{ID: "echo", Kind: workflow.NodeTransform, Config: json.RawMessage(`{"output":{"ok":true}}`)}},
			Edges:   []workflow.Edge{{From: "start", To: "echo"}}}
		w, err := e.workflows.Create(ctx, e.acme, "Hook", "", &g, "")
		must(t, err)
		_, err = e.workflows.Publish(ctx, e.acme, w.ID, "", workflow.Checks{})
		must(t, err)

		b := e.signIn("owner@a.example")
		page := b.get("/acme/workflows/" + w.ID)
		wantStatus(t, "workflow page", page, http.StatusOK)
		if !strings.Contains(page.Body, "Generate secret") || webhookSecretPattern.MatchString(page.Body) {
			t.Fatal("before any secret: want a Generate secret button and no secret shown")
		}
		if strings.Contains(page.Body, `name="secret"`) {
			t.Fatal("the panel still asks the user to type a secret")
		}
		url := regexp.MustCompile(`/webhooks/[0-9a-f-]{36}`).FindString(page.Body)
		call := func(secret string) int {
			t.Helper()
			body := `{"n":1}`
			m := hmac.New(sha256.New, []byte(secret))
			m.Write([]byte(body))
			req, _ := http.NewRequest("POST", e.srv.URL+url, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-Signature", "sha256="+hex.EncodeToString(m.Sum(nil)))
			return e.browser().do(req).StatusCode
		}

		wantStatus(t, "generate", b.post("/acme/workflows/"+w.ID+"/webhook/secret", nil), http.StatusSeeOther)
		first := webhookSecretPattern.FindString(b.get("/acme/workflows/" + w.ID).Body)
		if first == "" {
			t.Fatal("after Generate secret: the panel shows no secret")
		}
		if code := call(first); code != http.StatusAccepted {
			t.Fatalf("signed with the generated secret: got %d, want 202", code)
		}

		wantStatus(t, "regenerate", b.post("/acme/workflows/"+w.ID+"/webhook/secret", nil), http.StatusSeeOther)
		page = b.get("/acme/workflows/" + w.ID)
		second := webhookSecretPattern.FindString(page.Body)
		if second == "" || second == first || !strings.Contains(page.Body, "Regenerate secret") {
			t.Fatalf("after Regenerate secret: got %q, want a new secret and the button", second)
		}
		if code := call(first); code != http.StatusUnauthorized {
			t.Fatalf("signed with the old secret: got %d, want 401", code)
		}
		if code := call(second); code != http.StatusAccepted {
			t.Fatalf("signed with the new secret: got %d, want 202", code)
		}
		// Shown in the panel only: no log line carries it.
		if logs := e.log.String(); strings.Contains(logs, first) || strings.Contains(logs, second) {
			t.Fatal("a webhook secret reached the log")
		}
	})
}
