package trigger

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeGitHub answers like GitHub's repository webhooks API: POST
// /repos/{owner}/{repo}/hooks → 201 with the hook, DELETE …/hooks/{id} →
// 204, or 404 once it is gone.
type fakeGitHub struct {
	mu    sync.Mutex
	hooks map[string]map[string]any
	seen  []string
}

func (f *fakeGitHub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seen = append(f.seen, r.Method+" "+r.URL.Path)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	if r.Header.Get("Authorization") != "Bearer gho_test" {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"message":"Bad credentials","documentation_url":"https://docs.github.com/rest","status":"401"}`)
		return
	}
	switch {
	case r.Method == "POST" && r.URL.Path == "/repos/octo-org/hello-world/hooks":
		if r.Header.Get("Content-Type") != "application/json" {
			w.WriteHeader(http.StatusUnsupportedMediaType)
			return
		}
		var h map[string]any
		if err := json.NewDecoder(r.Body).Decode(&h); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"message":"Problems parsing JSON"}`)
			return
		}
		f.hooks["12345678"] = h
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, `{"type":"Repository","id":12345678,"name":"web","active":true,"events":["issues"],"config":{"content_type":"json","insecure_ssl":"0","url":"https://example.com/webhook"},"url":"https://api.github.com/repos/octo-org/hello-world/hooks/12345678"}`)
	case r.Method == "POST" && r.URL.Path == "/repos/octo-org/private/hooks":
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"message":"Not Found","documentation_url":"https://docs.github.com/rest/repos/webhooks#create-a-repository-webhook","status":"404"}`)
	case r.Method == "DELETE" && strings.HasPrefix(r.URL.Path, "/repos/octo-org/hello-world/hooks/"):
		id := strings.TrimPrefix(r.URL.Path, "/repos/octo-org/hello-world/hooks/")
		if _, ok := f.hooks[id]; !ok {
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"message":"Not Found"}`)
			return
		}
		delete(f.hooks, id)
		w.WriteHeader(http.StatusNoContent)
	default:
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"message":"Not Found"}`)
	}
}

func TestGitHubSubscribeAndUnsubscribe(t *testing.T) {
	gh := &fakeGitHub{hooks: map[string]map[string]any{}}
	srv := httptest.NewServer(gh)
	defer srv.Close()
	c := pollCall{api: bearerAPI{"gho_test"}, app: appAt(t, "github", srv), conn: "conn-1", inputs: map[string]string{"owner": "octo-org", "repo": "hello-world"}}
	src := source(t, "github", "new-issue")
	ctx := context.Background()

	sub, err := src.subscribe(ctx, c, SubscribeArgs{DeliveryURL: "https://tj.example/webhooks/triggers/tok", Secret: "s3cret"})
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	if sub != (Subscription{ID: "12345678"}) {
		t.Errorf("subscription: got %+v, want the hook id only", sub)
	}
	h := gh.hooks["12345678"]
	cfg, _ := h["config"].(map[string]any)
	if h["name"] != "web" || h["active"] != true || len(h["events"].([]any)) != 1 || h["events"].([]any)[0] != "issues" ||
		cfg["url"] != "https://tj.example/webhooks/triggers/tok" || cfg["content_type"] != "json" || cfg["secret"] != "s3cret" || cfg["insecure_ssl"] != "0" {
		t.Errorf("hook sent: got %v", h)
	}

	if err := src.unsubscribe(ctx, c, sub); err != nil {
		t.Fatalf("unsubscribe: %v", err)
	}
	if len(gh.hooks) != 0 {
		t.Errorf("hooks after unsubscribe: got %v, want none", gh.hooks)
	}
	if err := src.unsubscribe(ctx, c, sub); err != nil {
		t.Errorf("unsubscribe of a hook already gone: got %v, want no error", err)
	}

	pr := source(t, "github", "new-pull-request")
	if _, err := pr.subscribe(ctx, c, SubscribeArgs{DeliveryURL: "https://tj.example/x", Secret: "s"}); err != nil {
		t.Fatal(err)
	}
	if ev := gh.hooks["12345678"]["events"].([]any); ev[0] != "pull_request" {
		t.Errorf("pull request hook events: got %v", ev)
	}

	c.inputs = map[string]string{"owner": "octo-org", "repo": "private"}
	if _, err := src.subscribe(ctx, c, SubscribeArgs{DeliveryURL: "https://tj.example/x", Secret: "s"}); err == nil || !strings.Contains(err.Error(), "HTTP 404") || !strings.Contains(err.Error(), "Not Found") {
		t.Errorf("subscribe to a repository out of reach: got %v, want GitHub's 404", err)
	}
	c.api = bearerAPI{"revoked"}
	c.inputs = map[string]string{"owner": "octo-org", "repo": "hello-world"}
	if _, err := src.subscribe(ctx, c, SubscribeArgs{DeliveryURL: "https://tj.example/x", Secret: "s"}); err == nil || !strings.Contains(err.Error(), "Bad credentials") {
		t.Errorf("subscribe with a refused token: got %v", err)
	}
	for _, in := range []map[string]string{{"owner": "", "repo": "x"}, {"owner": "a/b", "repo": "x"}, {"owner": "a", "repo": "../../user"}, {"owner": "a", "repo": ".."}} {
		c.inputs = in
		if _, err := src.subscribe(ctx, c, SubscribeArgs{DeliveryURL: "https://tj.example/x", Secret: "s"}); err == nil {
			t.Errorf("subscribe with inputs %v: got no error", in)
		}
	}
	n := len(gh.seen)
	if n != 6 {
		t.Errorf("requests at GitHub: got %v, want 6 (bad inputs send none)", gh.seen)
	}
}

func githubSign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

func githubDelivery(event, guid, secret string, body []byte) Delivery {
	h := http.Header{}
	h.Set("X-GitHub-Event", event)
	h.Set("X-GitHub-Delivery", guid)
	h.Set("Content-Type", "application/json")
	if secret != "" {
		h.Set("X-Hub-Signature-256", githubSign(secret, body))
	}
	return Delivery{Header: h, Body: body, Now: time.Now()}
}

func TestGitHubVerify(t *testing.T) {
	src := source(t, "github", "new-issue")
	// GitHub's documented example: secret "It's a Secret to Everybody",
	// payload "Hello, World!".
	d := Delivery{Header: http.Header{}, Body: []byte("Hello, World!")}
	d.Header.Set("X-Hub-Signature-256", "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")
	if err := src.verify(d, "It's a Secret to Everybody"); err != nil {
		t.Errorf("documented vector: %v", err)
	}
	body := []byte(`{"action":"opened"}`)
	good := githubDelivery("issues", "g1", "s3cret", body)
	if err := src.verify(good, "s3cret"); err != nil {
		t.Errorf("good signature: %v", err)
	}
	for name, tc := range map[string]struct {
		d      Delivery
		secret string
	}{
		"wrong secret":   {good, "other"},
		"no secret kept": {good, ""},
		"tampered body":  {Delivery{Header: good.Header, Body: []byte(`{"action":"closed"}`)}, "s3cret"},
		"missing header": {githubDelivery("issues", "g1", "", body), "s3cret"},
		"sha1 only":      {Delivery{Header: http.Header{"X-Hub-Signature-256": {"sha1=" + strings.Repeat("0", 40)}}, Body: body}, "s3cret"},
		"not hex":        {Delivery{Header: http.Header{"X-Hub-Signature-256": {"sha256=zz"}}, Body: body}, "s3cret"},
	} {
		if err := src.verify(tc.d, tc.secret); err == nil {
			t.Errorf("%s: got no error", name)
		}
	}
}

// From GitHub's webhook events documentation (trimmed).
const githubIssueOpened = `{
  "action": "opened",
  "issue": {
    "url": "https://api.github.com/repos/octo-org/hello-world/issues/1347",
    "id": 1,
    "node_id": "MDU6SXNzdWUx",
    "number": 1347,
    "title": "Found a bug",
    "user": {"login": "octocat", "id": 1},
    "state": "open",
    "body": "I'm having a problem with this."
  },
  "repository": {"id": 1296269, "name": "hello-world", "full_name": "octo-org/hello-world"},
  "sender": {"login": "octocat", "id": 1}
}`

const githubPullRequestOpened = `{
  "action": "opened",
  "number": 2,
  "pull_request": {
    "url": "https://api.github.com/repos/octo-org/hello-world/pulls/2",
    "id": 279147437,
    "number": 2,
    "state": "open",
    "title": "Update the README with new information.",
    "user": {"login": "Codertocat", "id": 21031067},
    "head": {"ref": "changes"},
    "base": {"ref": "master"}
  },
  "repository": {"id": 186853002, "name": "hello-world", "full_name": "octo-org/hello-world"},
  "sender": {"login": "Codertocat", "id": 21031067}
}`

func TestGitHubParse(t *testing.T) {
	issue, pr := source(t, "github", "new-issue"), source(t, "github", "new-pull-request")
	items, reply, err := issue.parse(githubDelivery("ping", "p1", "s", []byte(`{"zen":"Keep it logically awesome.","hook_id":12345678,"hook":{"type":"Repository","events":["issues"]}}`)), nil)
	if err != nil || reply != nil || len(items) != 0 {
		t.Errorf("ping: got %v, %v, %v, want nothing", items, reply, err)
	}
	items, _, err = issue.parse(githubDelivery("issues", "72d3162e-cc78-11e3-81ab-4c9367dc0958", "s", []byte(githubIssueOpened)), nil)
	if err != nil || len(items) != 1 || items[0].ID != "issue:1:opened" {
		t.Fatalf("issue opened: got %v, %v, want one item issue:1:opened", items, err)
	}
	var p struct {
		Issue struct {
			Title string `json:"title"`
		} `json:"issue"`
	}
	if json.Unmarshal(items[0].Payload, &p); p.Issue.Title != "Found a bug" {
		t.Errorf("payload: got %s", items[0].Payload)
	}
	// A redelivery (another GUID) is the same item.
	again, _, _ := issue.parse(githubDelivery("issues", "another-guid", "s", []byte(githubIssueOpened)), nil)
	if len(again) != 1 || again[0].ID != items[0].ID {
		t.Errorf("redelivery: got %v, want the same id", again)
	}
	closed := strings.Replace(githubIssueOpened, `"action": "opened"`, `"action": "closed"`, 1)
	if items, _, err := issue.parse(githubDelivery("issues", "g", "s", []byte(closed)), nil); err != nil || len(items) != 0 {
		t.Errorf("issue closed: got %v, %v, want nothing", items, err)
	}
	if items, _, err := issue.parse(githubDelivery("pull_request", "g", "s", []byte(githubPullRequestOpened)), nil); err != nil || len(items) != 0 {
		t.Errorf("pull request at the issue trigger: got %v, %v, want nothing", items, err)
	}
	items, _, err = pr.parse(githubDelivery("pull_request", "g", "s", []byte(githubPullRequestOpened)), nil)
	if err != nil || len(items) != 1 || items[0].ID != "pull_request:279147437:opened" {
		t.Errorf("pull request opened: got %v, %v", items, err)
	}
	if _, _, err := issue.parse(githubDelivery("issues", "g", "s", []byte(`not json`)), nil); err == nil {
		t.Error("not JSON: got no error")
	}
	if _, _, err := issue.parse(githubDelivery("issues", "g", "s", []byte(`{"action":"opened","issue":{}}`)), nil); err == nil {
		t.Error("issue without id: got no error")
	}
}
