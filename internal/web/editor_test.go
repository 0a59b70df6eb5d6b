package web

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"taskjuice/internal/account"
	"taskjuice/internal/authn"
	"taskjuice/internal/catalog"
	"taskjuice/internal/connection"
	"taskjuice/internal/db"
	"taskjuice/internal/db/dbtest"
	"taskjuice/internal/vault"
	"taskjuice/internal/workflow"
)

const editorPassword = "correct horse battery"

// editorEnv is the editor served over a real SQLite database, with one
// signed-in member of workspace "acme" and another agency's workspace.
type editorEnv struct {
	t         *testing.T
	h         *Handler
	srv       *httptest.Server
	c         *http.Client
	workflows *workflow.Service
	conns     *connection.Service
	db        *db.DB
	acme      account.Workspace
	bravo     account.Workspace
}

func newEditorEnv(t *testing.T) *editorEnv {
	t.Helper()
	ctx := context.Background()
	d := dbtest.SQLite(t)
	accounts := account.NewService(d)
	cat, err := catalog.Load(catalog.Options{Getenv: func(string) string { return "" }, SandboxURL: "http://sandbox.test/sandbox"})
	if err != nil {
		t.Fatal(err)
	}
	key, _, err := vault.LoadKey("", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e := &editorEnv{t: t, db: d, workflows: workflow.NewService(d), conns: connection.NewService(d, vault.NewKeyring(key))}
	h, err := New(Deps{
		Accounts: accounts, Auth: authn.New(accounts, false), Log: slog.New(slog.NewTextHandler(testLog{t}, nil)),
		Connections: e.conns, Catalog: cat, Workflows: e.workflows,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.h = h
	mux := http.NewServeMux()
	h.registerEditor(mux)
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)

	a, _, err := accounts.CreateAccount(ctx, "Agency A", account.NewUser{Email: "owner@a.example", Name: "Olive", Password: editorPassword})
	check(t, err)
	_, err = accounts.CreateStaff(ctx, a.ID, account.NewUser{Email: "member@a.example", Name: "Mia", Password: editorPassword}, account.RoleMember)
	check(t, err)
	e.acme, err = accounts.CreateWorkspaceForAccount(ctx, a.ID, "Acme Corp", "acme")
	check(t, err)
	b, _, err := accounts.CreateAccount(ctx, "Agency B", account.NewUser{Email: "owner@b.example", Name: "Bob", Password: editorPassword})
	check(t, err)
	e.bravo, err = accounts.CreateWorkspaceForAccount(ctx, b.ID, "Bravo", "bravo")
	check(t, err)

	sess, _, err := accounts.SignIn(ctx, "member@a.example", editorPassword, "127.0.0.1", "test")
	check(t, err)
	jar, _ := cookiejar.New(nil)
	u, _ := url.Parse(e.srv.URL)
	jar.SetCookies(u, []*http.Cookie{{Name: authn.SessionCookie, Value: sess.Token, Path: "/"}})
	e.c = &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return e
}

func check(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

type page struct {
	Status   int
	Location string
	Body     string
}

func (e *editorEnv) do(method, path string, form url.Values) page {
	e.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, e.srv.URL+path, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	res, err := e.c.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return page{Status: res.StatusCode, Location: res.Header.Get("Location"), Body: string(b)}
}

func (e *editorEnv) get(path string) page { return e.do("GET", path, nil) }

func (e *editorEnv) post(path string, form url.Values) page {
	if form == nil {
		form = url.Values{}
	}
	return e.do("POST", path, form)
}

// workflow makes a workflow in acme and returns the editor's URL.
func (e *editorEnv) workflow(name string) (id, base string) {
	e.t.Helper()
	wf, err := e.workflows.Create(context.Background(), e.acme, name, "", nil, "")
	check(e.t, err)
	return wf.ID, "/acme/workflows/" + wf.ID
}

func (e *editorEnv) connection(status connection.Status) string {
	e.t.Helper()
	c, err := e.conns.Create(context.Background(), e.acme, connection.New{AppKey: "sandbox-chat", Label: "Team chat " + string(status), Status: status}, connection.System)
	check(e.t, err)
	return c.ID
}

func (e *editorEnv) graph(id string) workflow.Graph {
	e.t.Helper()
	exp, err := e.workflows.Export(context.Background(), e.acme, id)
	check(e.t, err)
	return exp.Graph
}

func wantCode(t *testing.T, what string, p page, status int) {
	t.Helper()
	if p.Status != status {
		t.Fatalf("%s: got status %d, want %d; body: %.400s", what, p.Status, status, p.Body)
	}
}

func wantSaved(t *testing.T, what string, p page, base, anchor string) {
	t.Helper()
	if p.Status != http.StatusSeeOther || p.Location != base+"/edit#"+anchor {
		t.Fatalf("%s: got %d to %q, want 303 to %q; body: %.400s", what, p.Status, p.Location, base+"/edit#"+anchor, p.Body)
	}
}

func wantEdges(t *testing.T, g workflow.Graph, want ...workflow.Edge) {
	t.Helper()
	if !reflect.DeepEqual(g.Edges, want) {
		t.Fatalf("edges: got %+v, want %+v", g.Edges, want)
	}
}

func ids(g workflow.Graph) string {
	var out []string
	for _, n := range g.Nodes {
		out = append(out, n.ID)
	}
	return strings.Join(out, ",")
}

// card is the HTML of one step's card.
func card(body, id string) string {
	i := strings.Index(body, `id="step-`+id+`"`)
	if i < 0 {
		return ""
	}
	rest := body[i:]
	if j := strings.Index(rest, "</section>"); j >= 0 {
		rest = rest[:j]
	}
	return rest
}

// actionStep adds an action step that posts to Sandbox Chat through conn.
func (e *editorEnv) actionStep(base, conn string) {
	e.t.Helper()
	wantSaved(e.t, "add action", e.post(base+"/edit/steps", url.Values{"kind": {"action"}}), base, "step-step1")
	// Choosing the app first (the Update button) offers its actions.
	wantSaved(e.t, "choose app", e.post(base+"/edit/steps/step1", url.Values{"name": {"Tell the team"}, "app": {"sandbox-chat"}, "update": {"1"}}), base, "step-step1")
	page := e.get(base + "/edit")
	c := card(page.Body, "step1")
	for _, want := range []string{`value="post-message" selected`, `name="input.channel"`, "Connect New Account", "/acme/connections/new?app=sandbox-chat", "Client provides the connection", "Team chat"} {
		if !strings.Contains(c, want) {
			e.t.Fatalf("action card after choosing the app lacks %q: %d %.3000s", want, page.Status, page.Body)
		}
	}
	wantSaved(e.t, "configure", e.post(base+"/edit/steps/step1", url.Values{
		"name": {"Tell the team"}, "app": {"sandbox-chat"}, "action": {"post-message"},
		"input.channel": {"general"}, "input.text": {"New lead: {{ $trigger.name }}"}, "connection": {conn},
	}), base, "step-step1")
}

func TestEditorActionStepPublishes(t *testing.T) {
	e := newEditorEnv(t)
	id, base := e.workflow("New leads")
	conn := e.connection(connection.StatusActive)
	e.connection(connection.StatusError) // listed, not chosen

	first := e.get(base + "/edit")
	wantCode(t, "editor", first, 200)
	for _, want := range []string{"New leads", "Add at least one step after the trigger", "Add step", ">Publish<", "Back to workflow"} {
		if !strings.Contains(first.Body, want) {
			t.Fatalf("editor lacks %q", want)
		}
	}
	e.actionStep(base, conn)

	g := e.graph(id)
	if len(g.Nodes) != 1 || g.Nodes[0].Connection == nil || g.Nodes[0].Connection.ID != conn {
		t.Fatalf("saved step: got %+v, want step1 bound to %s", g.Nodes, conn)
	}
	var cfg workflow.ActionConfig
	check(t, json.Unmarshal(g.Nodes[0].Config, &cfg))
	if cfg.App != "sandbox-chat" || cfg.Action != "post-message" || string(cfg.Inputs["text"]) != `"New lead: {{ $trigger.name }}"` || g.Nodes[0].Name != "Tell the team" {
		t.Fatalf("saved config: got %+v named %q", cfg, g.Nodes[0].Name)
	}
	wantEdges(t, g, workflow.Edge{From: "trigger", To: "step1"})
	editor := e.get(base + "/edit")
	if !strings.Contains(editor.Body, "No problems found") || !strings.Contains(editor.Body, "$steps.step1.data") {
		t.Fatalf("editor of a valid draft: %.300s", card(editor.Body, "step1"))
	}

	res := e.post(base+"/publish", nil)
	if res.Status != http.StatusSeeOther || res.Location != base+"/edit" {
		t.Fatalf("publish: got %d to %q; body: %.600s", res.Status, res.Location, res.Body)
	}
	after := e.get(base + "/edit")
	if !strings.Contains(after.Body, "Workflow published") {
		t.Fatal("no flash after publishing")
	}
	if !strings.Contains(after.Body, "v1") || !strings.Contains(after.Body, "Deactivate") {
		t.Fatal("the editor does not show the active version")
	}
	wf, err := e.workflows.Get(context.Background(), e.acme, id)
	check(t, err)
	if wf.Status != workflow.StatusPublished {
		t.Fatalf("status: got %s, want published", wf.Status)
	}
	// The next change starts "Draft from v1"; the active version is kept.
	wantSaved(t, "add after publish", e.post(base+"/edit/steps", url.Values{"kind": {"delay"}}), base, "step-step2")
	if body := e.get(base + "/edit").Body; !strings.Contains(body, "Draft from v1") {
		t.Fatal("a change after publishing does not edit Draft from v1")
	}
	live, ok, err := e.workflows.Live(context.Background(), id)
	check(t, err)
	if !ok || len(live.Graph.Nodes) != 1 {
		t.Fatalf("the active version changed with the draft: %+v", live.Graph.Nodes)
	}
}

func TestEditorPublishRefusedForInactiveConnection(t *testing.T) {
	e := newEditorEnv(t)
	id, base := e.workflow("New leads")
	e.actionStep(base, e.connection(connection.StatusError))

	res := e.post(base+"/publish", nil)
	wantCode(t, "publish", res, http.StatusSeeOther)
	if got := res.Location; got != base+"/edit?check=publish" {
		t.Fatalf("publish refused: sent to %q, want the editor checking the draft", got)
	}
	res = e.get(base + "/edit?check=publish")
	if !strings.Contains(res.Body, `role="alert">Workflow compilation failed</div>`) {
		t.Fatal(`no alert reading exactly "Workflow compilation failed"`)
	}
	if c := card(res.Body, "step1"); !strings.Contains(c, "Action node has an inactive connection") {
		t.Fatalf("step card lacks the publish gate's message: %.2000s", c)
	}
	wf, err := e.workflows.Get(context.Background(), e.acme, id)
	check(t, err)
	if wf.Status != workflow.StatusDraft {
		t.Fatalf("status: got %s, want draft", wf.Status)
	}
}

func TestEditorMoveAndDelete(t *testing.T) {
	e := newEditorEnv(t)
	id, base := e.workflow("Order")
	for _, k := range []string{"transform", "delay", "approval"} {
		e.post(base+"/edit/steps", url.Values{"kind": {k}})
	}
	if got := ids(e.graph(id)); got != "step1,step2,step3" {
		t.Fatalf("steps: got %s, want step1,step2,step3", got)
	}
	wantSaved(t, "move up", e.post(base+"/edit/steps/step3/move", url.Values{"dir": {"up"}}), base, "step-step3")
	g := e.graph(id)
	if got := ids(g); got != "step1,step3,step2" {
		t.Fatalf("after moving step3 up: got %s", got)
	}
	wantEdges(t, g, workflow.Edge{From: "trigger", To: "step1"}, workflow.Edge{From: "step1", To: "step3"}, workflow.Edge{From: "step3", To: "step2"})
	wantSaved(t, "move down", e.post(base+"/edit/steps/step1/move", url.Values{"dir": {"down"}}), base, "step-step1")
	if got := ids(e.graph(id)); got != "step3,step1,step2" {
		t.Fatalf("after moving step1 down: got %s", got)
	}
	wantSaved(t, "delete", e.post(base+"/edit/steps/step3/delete", nil), base, "steps")
	g = e.graph(id)
	if got := ids(g); got != "step1,step2" {
		t.Fatalf("after deleting step3: got %s", got)
	}
	wantEdges(t, g, workflow.Edge{From: "trigger", To: "step1"}, workflow.Edge{From: "step1", To: "step2"})
	// A new step never reuses a name in use.
	wantSaved(t, "add", e.post(base+"/edit/steps", url.Values{"kind": {"http"}}), base, "step-step3")
	wantCode(t, "missing step", e.post(base+"/edit/steps/nope/delete", nil), 404)
	wantCode(t, "unknown kind", e.post(base+"/edit/steps", url.Values{"kind": {"webhook"}}), 422)
}

func TestEditorBranchFalsePath(t *testing.T) {
	e := newEditorEnv(t)
	id, base := e.workflow("Big deals")
	for _, k := range []string{"branch", "transform", "approval"} {
		e.post(base+"/edit/steps", url.Values{"kind": {k}})
	}
	wantSaved(t, "branch", e.post(base+"/edit/steps/step1", url.Values{
		"condition": {"{{ $trigger.amount > 1000 }}"}, "falseTo": {"step3"}, "then": {"next"},
	}), base, "step-step1")
	wantSaved(t, "end after step2", e.post(base+"/edit/steps/step2", url.Values{"output": {`{"big": true}`}, "then": {"end"}}), base, "step-step2")
	g := e.graph(id)
	wantEdges(t, g,
		workflow.Edge{From: "trigger", To: "step1"},
		workflow.Edge{From: "step1", To: "step2", When: "true"},
		workflow.Edge{From: "step1", To: "step3", When: "false"},
	)
	editor := e.get(base + "/edit")
	if c := card(editor.Body, "step1"); !strings.Contains(c, `<option value="step3" selected>`) {
		t.Fatalf("the branch card does not show its false path: %.1500s", c)
	}
	if !strings.Contains(editor.Body, `class="dg-label">false</text>`) || !strings.Contains(editor.Body, `class="dg-label">true</text>`) {
		t.Fatal("the picture lacks the branch's labelled paths")
	}
	if problems := workflow.Validate(g, workflow.Checks{}); len(problems) != 1 || problems[0].NodeID != "step3" {
		// Only the approval's message is missing.
		t.Fatalf("problems: got %v, want only step3's", problems)
	}

	// A path may only lead forward.
	back := e.post(base+"/edit/steps/step3", url.Values{"message": {"OK?"}})
	wantSaved(t, "approval", back, base, "step-step3")
	refused := e.post(base+"/edit/steps/step2", url.Values{"output": {`{}`}, "then": {"next"}})
	wantSaved(t, "transform", refused, base, "step-step2")
	wantCode(t, "false path backwards", e.post(base+"/edit/steps/step1", url.Values{"condition": {"{{ true }}"}, "falseTo": {"trigger"}}), 422)

	// Moving the target above the branch drops the path rather than
	// making a circle.
	e.post(base+"/edit/steps/step3/move", url.Values{"dir": {"up"}})
	e.post(base+"/edit/steps/step3/move", url.Values{"dir": {"up"}})
	g = e.graph(id)
	if got := ids(g); got != "step3,step1,step2" {
		t.Fatalf("order: got %s", got)
	}
	wantEdges(t, g,
		workflow.Edge{From: "trigger", To: "step3"},
		workflow.Edge{From: "step3", To: "step1"},
		workflow.Edge{From: "step1", To: "step2", When: "true"},
	)
}

func TestEditorRefusesMalformedJSON(t *testing.T) {
	e := newEditorEnv(t)
	id, base := e.workflow("Shape")
	e.post(base+"/edit/steps", url.Values{"kind": {"transform"}})
	e.post(base+"/edit/steps", url.Values{"kind": {"switch"}})
	before := e.graph(id)

	res := e.post(base+"/edit/steps/step1", url.Values{"name": {"Renamed"}, "output": {`{"total": }`}})
	wantCode(t, "malformed output", res, http.StatusUnprocessableEntity)
	c := card(res.Body, "step1")
	if !strings.Contains(c, "The output must be JSON") || !strings.Contains(c, `{&#34;total&#34;: }`) || !strings.Contains(c, `value="Renamed"`) {
		t.Fatalf("refused form does not show the message next to the typed value: %.1500s", c)
	}
	res = e.post(base+"/edit/steps/step2", url.Values{"value": {"{{ $trigger.plan }}"}, "cases": {"gold = \"gold\"\nsilver = silver"}})
	wantCode(t, "malformed case", res, http.StatusUnprocessableEntity)
	if !strings.Contains(card(res.Body, "step2"), "Line 2: write one case per line as name = JSON value") {
		t.Fatal("refused switch does not say which line is wrong")
	}
	if after := e.graph(id); !reflect.DeepEqual(after, before) {
		t.Fatalf("a refused form changed the draft:\n got %+v\nwant %+v", after, before)
	}
}

func TestEditorOtherWorkspaceNotFound(t *testing.T) {
	e := newEditorEnv(t)
	theirs, err := e.workflows.Create(context.Background(), e.bravo, "Theirs", "", nil, "")
	check(t, err)
	for _, path := range []string{"/acme/workflows/" + theirs.ID + "/edit", "/bravo/workflows/" + theirs.ID + "/edit"} {
		wantCode(t, "GET "+path, e.get(path), 404)
	}
	wantCode(t, "add step", e.post("/acme/workflows/"+theirs.ID+"/edit/steps", url.Values{"kind": {"delay"}}), 404)
	wantCode(t, "publish", e.post("/acme/workflows/"+theirs.ID+"/publish", nil), 404)
	g, err := e.workflows.Export(context.Background(), e.bravo, theirs.ID)
	check(t, err)
	if len(g.Graph.Nodes) != 0 {
		t.Fatal("another workspace's workflow was changed")
	}
}

func TestRelinkKeepsTheGraphConsistent(t *testing.T) {
	node := func(id string, k workflow.Kind, cfg string) workflow.Node {
		return workflow.Node{ID: id, Kind: k, Config: json.RawMessage(cfg)}
	}
	g := workflow.Graph{Schema: 1, Trigger: &workflow.Node{ID: "trigger", Kind: workflow.TriggerManual}, Nodes: []workflow.Node{
		node("sw", workflow.NodeSwitch, `{"value":"x","cases":[{"name":"a","equals":1},{"name":"b","equals":2}]}`),
		node("one", workflow.NodeDelay, `{"duration":"1m"}`),
		node("loop", workflow.NodeLoop, `{"items":"x"}`),
		node("two", workflow.NodeDelay, `{"duration":"1m"}`),
	}, Edges: []workflow.Edge{
		{From: "sw", To: "loop", When: "a"},
		{From: "sw", To: "two", When: "a"}, // a second target for one path
		{From: "sw", To: "gone", When: "b"},
		{From: "sw", To: "two", When: "c"}, // no such case
		{From: "loop", To: "one", When: "done"},
	}}
	relink(&g, map[string]bool{"one": true})
	wantEdges(t, g,
		workflow.Edge{From: "trigger", To: "sw"},
		workflow.Edge{From: "sw", To: "one", When: "default"},
		workflow.Edge{From: "sw", To: "loop", When: "a"},
		workflow.Edge{From: "loop", To: "two", When: "each"},
	)
	if !inEditorShape(g) {
		t.Fatal("a relinked graph is not in the editor's shape")
	}
	if ends := endsOf(g); !reflect.DeepEqual(ends, map[string]bool{"one": true}) {
		t.Fatalf("ends: got %v", ends)
	}
	if id := newStepID(g); id != "step1" {
		t.Fatalf("new id: got %s, want step1", id)
	}
	g.Nodes = append(g.Nodes, node("step7", workflow.NodeDelay, `{}`))
	if id := newStepID(g); id != "step8" {
		t.Fatalf("new id: got %s, want step8", id)
	}
}

// testLog sends the handler's log lines to the test's output.
type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Helper()
	l.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// The trigger card sets a webhook's replay defences, and shows what it saved.
func TestEditorWebhookReplaySettings(t *testing.T) {
	e := newEditorEnv(t)
	id, base := e.workflow("Hook")
	wantSaved(t, "webhook trigger", e.post(base+"/edit/trigger", url.Values{"kind": {"webhook"}, "auth": {"hmac-sha256"},
		"deliveryHeader": {"X-GitHub-Delivery"}, "timestamp": {"stripe"}}), base, "trigger")
	var cfg workflow.WebhookConfig
	check(t, json.Unmarshal(e.graph(id).Trigger.Config, &cfg))
	if want := (workflow.WebhookConfig{Auth: "hmac-sha256", DeliveryHeader: "X-GitHub-Delivery", Timestamp: "stripe"}); cfg != want {
		t.Fatalf("saved config: got %+v, want %+v", cfg, want)
	}
	page := e.get(base + "/edit")
	if !strings.Contains(page.Body, `value="X-GitHub-Delivery"`) || !strings.Contains(page.Body, `<option value="stripe" selected>`) {
		t.Fatal("the trigger card does not show the saved delivery header and timestamp scheme")
	}
}
