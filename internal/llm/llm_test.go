package llm_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"taskjuice/internal/account"
	"taskjuice/internal/apperr"
	"taskjuice/internal/db"
	"taskjuice/internal/db/dbtest"
	"taskjuice/internal/llm"
	"taskjuice/internal/sandbox"
	"taskjuice/internal/vault"
)

type fixture struct {
	t    *testing.T
	ctx  context.Context
	d    *db.DB
	ws   account.Workspace
	ws2  account.Workspace
	sb   *sandbox.Provider
	key  vault.Key
	svc  *llm.Service
	base string // the sandbox's model base URL
}

func setup(t *testing.T, d *db.DB) *fixture {
	t.Helper()
	f := &fixture{t: t, ctx: context.Background(), d: d}
	accounts := account.NewService(d)
	a, _, err := accounts.CreateAccount(f.ctx, "Agency", account.NewUser{Email: "o@a.example", Password: "correct horse battery"})
	must(t, err)
	f.ws, err = accounts.CreateWorkspaceForAccount(f.ctx, a.ID, "Acme", "acme")
	must(t, err)
	f.ws2, err = accounts.CreateWorkspaceForAccount(f.ctx, a.ID, "Beta", "beta")
	must(t, err)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { f.sb.Handler().ServeHTTP(w, r) }))
	t.Cleanup(srv.Close)
	f.sb, err = sandbox.New(sandbox.Options{BaseURL: srv.URL, Clients: []sandbox.Client{{ID: "taskjuice", RedirectURIs: []string{"http://127.0.0.1/callback"}}}})
	must(t, err)
	t.Cleanup(func() { _ = f.sb.Close() })
	f.base = f.sb.Endpoints().Model
	f.key, _, err = vault.GenerateKey()
	must(t, err)
	f.svc = llm.NewService(d, vault.NewKeyring(f.key), llm.Options{})
	return f
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// sandboxInput is a provider of the sandbox's models at made-up prices.
func (f *fixture) sandboxInput(key string) llm.ProviderInput {
	return llm.ProviderInput{Name: "Sandbox", BaseURL: f.base, APIKey: key, Models: []llm.ModelInput{
		{Model: sandbox.ModelSmall, InputUSDPerMTok: "2.50", OutputUSDPerMTok: "10", MaxOutputTokens: 1000},
		{Model: sandbox.ModelLarge, InputUSDPerMTok: "5", OutputUSDPerMTok: "15.75"},
	}}
}

// noKey fails the test if v's JSON (or text) holds the key.
func noKey(t *testing.T, what string, v any, key string) {
	t.Helper()
	var s string
	if err, ok := v.(error); ok {
		s = err.Error()
	} else {
		b, err := json.Marshal(v)
		must(t, err)
		s = string(b)
	}
	if strings.Contains(s, key) || strings.Contains(s, key[len(key)-12:]) {
		t.Fatalf("%s holds the API key: %s", what, s)
	}
}

func TestProviders(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		key := f.sb.ModelKey()
		p, err := f.svc.Create(f.ctx, f.ws.ID, f.sandboxInput(key))
		must(t, err)
		noKey(t, "created provider", p, key)
		if !p.HasKey || p.KeyHint != key[:3]+"…"+key[len(key)-4:] {
			t.Fatalf("key hint: got %q (hasKey %v), want the first 3 and last 4 characters", p.KeyHint, p.HasKey)
		}
		got, err := f.svc.Get(f.ctx, f.ws.ID, p.ID)
		must(t, err)
		noKey(t, "provider read back", got, key)
		want := []llm.ModelPrice{
			{Model: sandbox.ModelSmall, Price: llm.Price{InputPerMTok: 2_500_000, OutputPerMTok: 10_000_000}, MaxOutputTokens: 1000},
			{Model: sandbox.ModelLarge, Price: llm.Price{InputPerMTok: 5_000_000, OutputPerMTok: 15_750_000}, MaxOutputTokens: llm.DefaultMaxOutput},
		}
		if len(got.Models) != 2 || got.Models[0] != want[0] || got.Models[1] != want[1] {
			t.Fatalf("models: got %+v, want %+v", got.Models, want)
		}
		b, _ := json.Marshal(got)
		if !strings.Contains(string(b), `"inputUsdPerMTok":"2.50"`) || !strings.Contains(string(b), `"outputUsdPerMTok":"15.75"`) {
			t.Fatalf("provider JSON shows prices as %s, want dollar strings", b)
		}

		// Names are unique per workspace, in any case; another workspace
		// may reuse one, and does not see the first one's providers.
		dup := f.sandboxInput("sk-other-key-0123456789")
		dup.Name = "sandbox"
		_, err = f.svc.Create(f.ctx, f.ws.ID, dup)
		if apperr.Status(err) != 409 || apperr.Fields(err)["name"] == "" {
			t.Fatalf("duplicate name: got %v, want 409 on name", err)
		}
		other, err := f.svc.Create(f.ctx, f.ws2.ID, dup)
		must(t, err)
		if _, err := f.svc.Get(f.ctx, f.ws.ID, other.ID); !apperr.IsNotFound(err) {
			t.Fatalf("another workspace's provider: got %v, want not found", err)
		}
		if _, err := f.svc.Client(f.ctx, f.ws.ID, other.ID); !apperr.IsNotFound(err) {
			t.Fatalf("client of another workspace's provider: got %v, want not found", err)
		}
		if err := f.svc.Delete(f.ctx, f.ws.ID, other.ID); !apperr.IsNotFound(err) {
			t.Fatalf("delete another workspace's provider: got %v, want not found", err)
		}
		list, err := f.svc.List(f.ctx, f.ws.ID)
		must(t, err)
		if len(list) != 1 || list[0].ID != p.ID || len(list[0].Models) != 2 {
			t.Fatalf("list: got %+v, want the one provider with its models", list)
		}

		// Update without a key keeps it: the client still gets through.
		in := f.sandboxInput("")
		in.Name, in.Models = "Sandbox renamed", in.Models[:1]
		up, err := f.svc.Update(f.ctx, f.ws.ID, p.ID, in)
		must(t, err)
		if up.Name != "Sandbox renamed" || len(up.Models) != 1 || up.KeyHint != p.KeyHint {
			t.Fatalf("update: got %+v", up)
		}
		c, err := f.svc.Client(f.ctx, f.ws.ID, p.ID)
		must(t, err)
		if _, err := c.Complete(f.ctx, llm.Request{Model: sandbox.ModelSmall, Messages: []llm.Message{{Role: llm.RoleUser, Content: "hi"}}}); err != nil {
			t.Fatalf("complete after an update that kept the key: %v", err)
		}
		if _, err := c.Model(sandbox.ModelLarge); err == nil {
			t.Fatal("a model removed by the update is still priced")
		}

		must(t, f.svc.Delete(f.ctx, f.ws.ID, p.ID))
		if _, err := f.svc.Get(f.ctx, f.ws.ID, p.ID); !apperr.IsNotFound(err) {
			t.Fatalf("deleted provider: got %v, want not found", err)
		}
		var prices int
		must(t, d.Read().QueryRowContext(f.ctx, `SELECT count(*) FROM model_prices WHERE provider_id = $1`, p.ID).Scan(&prices))
		if prices != 0 {
			t.Fatalf("a deleted provider left %d prices", prices)
		}
	})
}

func TestProviderValidation(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		for _, tc := range []struct {
			name  string
			in    llm.ProviderInput
			field string
		}{
			{"no name", llm.ProviderInput{BaseURL: "https://x.example/v1", APIKey: "k", Models: []llm.ModelInput{{Model: "m", InputUSDPerMTok: "1", OutputUSDPerMTok: "1"}}}, "name"},
			{"ftp URL", llm.ProviderInput{Name: "a", BaseURL: "ftp://x.example/v1", APIKey: "k", Models: []llm.ModelInput{{Model: "m", InputUSDPerMTok: "1", OutputUSDPerMTok: "1"}}}, "baseUrl"},
			{"no host", llm.ProviderInput{Name: "a", BaseURL: "https:///v1", APIKey: "k", Models: []llm.ModelInput{{Model: "m", InputUSDPerMTok: "1", OutputUSDPerMTok: "1"}}}, "baseUrl"},
			{"key in URL", llm.ProviderInput{Name: "a", BaseURL: "https://sk-1:x@x.example/v1", APIKey: "k", Models: []llm.ModelInput{{Model: "m", InputUSDPerMTok: "1", OutputUSDPerMTok: "1"}}}, "baseUrl"},
			{"no key", llm.ProviderInput{Name: "a", BaseURL: "https://x.example/v1", Models: []llm.ModelInput{{Model: "m", InputUSDPerMTok: "1", OutputUSDPerMTok: "1"}}}, "apiKey"},
			{"no model", llm.ProviderInput{Name: "a", BaseURL: "https://x.example/v1", APIKey: "k"}, "models"},
			{"model without name", llm.ProviderInput{Name: "a", BaseURL: "https://x.example/v1", APIKey: "k", Models: []llm.ModelInput{{InputUSDPerMTok: "1", OutputUSDPerMTok: "1"}}}, "models[0].model"},
			{"negative price", llm.ProviderInput{Name: "a", BaseURL: "https://x.example/v1", APIKey: "k", Models: []llm.ModelInput{{Model: "m", InputUSDPerMTok: "-1", OutputUSDPerMTok: "1"}}}, "models[0].inputUsdPerMTok"},
			{"price not a number", llm.ProviderInput{Name: "a", BaseURL: "https://x.example/v1", APIKey: "k", Models: []llm.ModelInput{{Model: "m", InputUSDPerMTok: "1", OutputUSDPerMTok: "ten"}}}, "models[0].outputUsdPerMTok"},
			{"missing price", llm.ProviderInput{Name: "a", BaseURL: "https://x.example/v1", APIKey: "k", Models: []llm.ModelInput{{Model: "m", InputUSDPerMTok: "1"}}}, "models[0].outputUsdPerMTok"},
			{"max tokens", llm.ProviderInput{Name: "a", BaseURL: "https://x.example/v1", APIKey: "k", Models: []llm.ModelInput{{Model: "m", InputUSDPerMTok: "1", OutputUSDPerMTok: "1", MaxOutputTokens: -5}}}, "models[0].maxOutputTokens"},
			{"model twice", llm.ProviderInput{Name: "a", BaseURL: "https://x.example/v1", APIKey: "k", Models: []llm.ModelInput{{Model: "m", InputUSDPerMTok: "1", OutputUSDPerMTok: "1"}, {Model: "m", InputUSDPerMTok: "1", OutputUSDPerMTok: "1"}}}, "models[1].model"},
		} {
			_, err := f.svc.Create(f.ctx, f.ws.ID, tc.in)
			if apperr.Status(err) != 422 {
				t.Errorf("%s: got %v, want 422", tc.name, err)
				continue
			}
			if msg := apperr.Fields(err)[tc.field]; msg == "" {
				t.Errorf("%s: fields %v, want a message on %s", tc.name, apperr.Fields(err), tc.field)
			}
		}
		// Every problem is reported at once.
		_, err := f.svc.Create(f.ctx, f.ws.ID, llm.ProviderInput{})
		if got := apperr.Fields(err); got["name"] == "" || got["baseUrl"] == "" || got["apiKey"] == "" || got["models"] == "" {
			t.Fatalf("empty input: fields %v, want name, baseUrl, apiKey and models", got)
		}
		list, err := f.svc.List(f.ctx, f.ws.ID)
		must(t, err)
		if len(list) != 0 {
			t.Fatalf("refused inputs stored %d providers", len(list))
		}
	})
}

// tools are what an agent offers the model.
var tools = []llm.Tool{{
	Name: "lookup_contact", Description: "Find a contact by email",
	Parameters: json.RawMessage(`{"type":"object","properties":{"email":{"type":"string"}},"required":["email"]}`),
}}

func TestCompleteWithTools(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		key := f.sb.ModelKey()
		p, err := f.svc.Create(f.ctx, f.ws.ID, f.sandboxInput(key))
		must(t, err)
		c, err := f.svc.Client(f.ctx, f.ws.ID, p.ID)
		must(t, err)
		noKey(t, "client's provider", c.Provider(), key)
		must(t, f.sb.ScriptModel(
			sandbox.ModelReply{ToolCalls: []sandbox.ModelToolCall{{ID: "call_1", Name: "lookup_contact", Arguments: `{"email":"ada@example.com"}`}}},
			sandbox.TextReply("Ada Lovelace is a customer since 2021."),
		))

		req := llm.Request{Model: sandbox.ModelSmall, Tools: tools, Messages: []llm.Message{
			{Role: llm.RoleSystem, Content: "You help with contacts. <be brief> & exact"},
			{Role: llm.RoleUser, Content: "Who is ada@example.com? Ünïcödé ✓"},
		}}
		plan, err := c.Plan(req)
		must(t, err)
		if plan.MaxTokens != 1000 {
			t.Fatalf("plan max tokens: got %d, want the model's 1000", plan.MaxTokens)
		}
		res, err := c.Complete(f.ctx, req)
		must(t, err)
		noKey(t, "response", res, key)
		if res.FinishReason != "tool_calls" || len(res.ToolCalls) != 1 {
			t.Fatalf("first answer: got %+v, want one tool call", res)
		}
		call := res.ToolCalls[0]
		if call.ID != "call_1" || call.Name != "lookup_contact" || string(call.Arguments) != `{"email":"ada@example.com"}` || call.Malformed {
			t.Fatalf("tool call: got %+v", call)
		}
		// The estimate is the sandbox's own count, so the worst case holds.
		if res.Usage.PromptTokens != plan.PromptTokens {
			t.Fatalf("prompt tokens: sandbox counted %d, estimate %d; want equal", res.Usage.PromptTokens, plan.PromptTokens)
		}
		if res.Usage.CompletionTokens < 1 || res.Usage.CompletionTokens > plan.MaxTokens {
			t.Fatalf("completion tokens %d outside 1..%d", res.Usage.CompletionTokens, plan.MaxTokens)
		}
		price := llm.Price{InputPerMTok: 2_500_000, OutputPerMTok: 10_000_000}
		if want := price.Cost(res.Usage); res.Cost != want || res.Cost <= 0 || res.Cost > plan.WorstCase {
			t.Fatalf("cost: got %v, want %v and at most the worst case %v", res.Cost, want, plan.WorstCase)
		}

		// The tool's result goes back; the model answers.
		req.Messages = append(req.Messages,
			llm.Message{Role: llm.RoleAssistant, ToolCalls: res.ToolCalls},
			llm.Message{Role: llm.RoleTool, ToolCallID: call.ID, Content: `{"name":"Ada Lovelace","since":2021}`})
		plan2, err := c.Plan(req)
		must(t, err)
		res2, err := c.Complete(f.ctx, req)
		must(t, err)
		if res2.FinishReason != "stop" || res2.Content != "Ada Lovelace is a customer since 2021." || len(res2.ToolCalls) != 0 {
			t.Fatalf("second answer: got %+v", res2)
		}
		if res2.Usage.PromptTokens != plan2.PromptTokens || res2.Cost > plan2.WorstCase {
			t.Fatalf("second call: usage %+v cost %v, plan %+v", res2.Usage, res2.Cost, plan2)
		}
		st := f.sb.Stats().Model
		if st.Requests != 2 || st.Completions != 2 || st.PromptTokens != res.Usage.PromptTokens+res2.Usage.PromptTokens {
			t.Fatalf("sandbox stats: got %+v, want 2 requests whose prompt tokens add up", st)
		}
	})
}

func TestCompleteMaxTokensAndFormat(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		p, err := f.svc.Create(f.ctx, f.ws.ID, f.sandboxInput(f.sb.ModelKey()))
		must(t, err)
		c, err := f.svc.Client(f.ctx, f.ws.ID, p.ID)
		must(t, err)

		// A long scripted answer is cut at max_tokens, and its cost stays
		// within the worst case.
		must(t, f.sb.ScriptModel(sandbox.TextReply(strings.Repeat("word ", 200))))
		req := llm.Request{Model: sandbox.ModelSmall, MaxTokens: 10, Messages: []llm.Message{{Role: llm.RoleUser, Content: "Say a lot"}}}
		plan, err := c.Plan(req)
		must(t, err)
		res, err := c.Complete(f.ctx, req)
		must(t, err)
		if res.FinishReason != "length" || res.Usage.CompletionTokens != 10 || plan.MaxTokens != 10 || res.Cost > plan.WorstCase {
			t.Fatalf("max tokens: got %+v (plan %+v), want cut at 10 tokens within the worst case", res, plan)
		}

		// JSON output against a schema.
		schema := json.RawMessage(`{"type":"object","properties":{"ok":{"type":"boolean"}},"required":["ok"]}`)
		res, err = c.Complete(f.ctx, llm.Request{Model: sandbox.ModelSmall, Messages: []llm.Message{{Role: llm.RoleUser, Content: "Answer"}},
			ResponseFormat: &llm.ResponseFormat{Type: llm.FormatJSONSchema, Name: "answer", Schema: schema}})
		must(t, err)
		var out struct{ OK *bool }
		if err := json.Unmarshal([]byte(res.Content), &out); err != nil || out.OK == nil {
			t.Fatalf("json_schema answer %q: %v", res.Content, err)
		}

		// A model the provider does not price is refused before sending.
		before := f.sb.Stats().Model.Requests
		_, err = c.Complete(f.ctx, llm.Request{Model: "gpt-unknown", Messages: []llm.Message{{Role: llm.RoleUser, Content: "hi"}}})
		var e *llm.Error
		if !errors.As(err, &e) || e.Code != "unknown_model" || e.Retryable {
			t.Fatalf("unknown model: got %v, want a non-retryable unknown_model", err)
		}
		if f.sb.Stats().Model.Requests != before {
			t.Fatal("a call to an unpriced model was sent")
		}

		// Malformed tool arguments are kept as text and sent back as such.
		must(t, f.sb.ScriptModel(sandbox.ModelReply{ToolCalls: []sandbox.ModelToolCall{{ID: "c1", Name: "lookup_contact", Arguments: `{"email": `}}}, sandbox.TextReply("ok")))
		req = llm.Request{Model: sandbox.ModelSmall, Tools: tools, Messages: []llm.Message{{Role: llm.RoleUser, Content: "go"}}}
		res, err = c.Complete(f.ctx, req)
		must(t, err)
		if len(res.ToolCalls) != 1 || !res.ToolCalls[0].Malformed || string(res.ToolCalls[0].Arguments) != `"{\"email\": "` {
			t.Fatalf("malformed arguments: got %+v", res.ToolCalls)
		}
		if _, err := json.Marshal(res); err != nil {
			t.Fatalf("a response with malformed arguments cannot be stored: %v", err)
		}
		req.Messages = append(req.Messages, llm.Message{Role: llm.RoleAssistant, ToolCalls: res.ToolCalls},
			llm.Message{Role: llm.RoleTool, ToolCallID: "c1", Content: "error: arguments are not JSON"})
		plan, err = c.Plan(req)
		must(t, err)
		res, err = c.Complete(f.ctx, req)
		must(t, err)
		if res.Usage.PromptTokens != plan.PromptTokens {
			t.Fatalf("prompt tokens with malformed arguments sent back: sandbox %d, estimate %d", res.Usage.PromptTokens, plan.PromptTokens)
		}
	})
}

func TestCompleteErrors(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		key := f.sb.ModelKey()
		good, err := f.svc.Create(f.ctx, f.ws.ID, f.sandboxInput(key))
		must(t, err)
		wrongKey := "sk-sandbox-wrong-" + strings.Repeat("x", 30)
		badIn := f.sandboxInput(wrongKey)
		badIn.Name = "Wrong key"
		bad, err := f.svc.Create(f.ctx, f.ws.ID, badIn)
		must(t, err)
		msg := []llm.Message{{Role: llm.RoleUser, Content: "hi"}}

		c, err := f.svc.Client(f.ctx, f.ws.ID, bad.ID)
		must(t, err)
		_, err = c.Complete(f.ctx, llm.Request{Model: sandbox.ModelSmall, Messages: msg})
		var e *llm.Error
		if !errors.As(err, &e) || e.Status != 401 || e.Retryable || llm.IsRetryable(err) {
			t.Fatalf("wrong key: got %#v, want a non-retryable 401", err)
		}
		noKey(t, "wrong-key error", err, wrongKey)
		noKey(t, "wrong-key error", err, key)

		c, err = f.svc.Client(f.ctx, f.ws.ID, good.ID)
		must(t, err)
		must(t, f.sb.FailModelNext(1, sandbox.Fault500, 0))
		_, err = c.Complete(f.ctx, llm.Request{Model: sandbox.ModelSmall, Messages: msg})
		if !errors.As(err, &e) || e.Status != 500 || !e.Retryable {
			t.Fatalf("500: got %#v, want a retryable 500", err)
		}
		noKey(t, "500 error", err, key)

		must(t, f.sb.FailModelNext(1, sandbox.Fault429, 3*time.Second))
		_, err = c.Complete(f.ctx, llm.Request{Model: sandbox.ModelSmall, Messages: msg})
		if !errors.As(err, &e) || e.Status != 429 || !e.Retryable || e.RetryAfter != 3*time.Second {
			t.Fatalf("429: got %#v, want a retryable 429 with Retry-After 3s", err)
		}

		// Another 4xx (the sandbox refuses an unknown role) is final.
		_, err = c.Complete(f.ctx, llm.Request{Model: sandbox.ModelSmall, Messages: []llm.Message{{Role: "narrator", Content: "x"}}})
		if !errors.As(err, &e) || e.Status != 400 || e.Retryable {
			t.Fatalf("400: got %#v, want a non-retryable 400", err)
		}

		// Nobody listening: a network error, retryable.
		dead := httptest.NewServer(http.NotFoundHandler())
		deadURL := dead.URL
		dead.Close()
		in := f.sandboxInput(key)
		in.Name, in.BaseURL = "Gone", deadURL+"/v1"
		gone, err := f.svc.Create(f.ctx, f.ws.ID, in)
		must(t, err)
		c, err = f.svc.Client(f.ctx, f.ws.ID, gone.ID)
		must(t, err)
		_, err = c.Complete(f.ctx, llm.Request{Model: sandbox.ModelSmall, Messages: msg})
		if !errors.As(err, &e) || e.Status != 0 || e.Code != "network" || !e.Retryable {
			t.Fatalf("network: got %#v, want a retryable network error", err)
		}
		noKey(t, "network error", err, key)
	})
}

// TestProviderEchoingKey: a provider that repeats the key in its error
// does not get it into ours.
func TestProviderEchoingKey(t *testing.T) {
	d := dbtest.SQLite(t)
	f := setup(t, d)
	const key = "sk-echo-0123456789abcdefghijklmnop"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{
			"message": "Incorrect API key provided: " + got + " (or " + got[:20] + "...)", "type": "invalid_request_error", "code": "invalid_api_key"}})
	}))
	t.Cleanup(srv.Close)
	in := f.sandboxInput(key)
	in.BaseURL = srv.URL + "/v1"
	p, err := f.svc.Create(f.ctx, f.ws.ID, in)
	must(t, err)
	c, err := f.svc.Client(f.ctx, f.ws.ID, p.ID)
	must(t, err)
	_, err = c.Complete(f.ctx, llm.Request{Model: sandbox.ModelSmall, Messages: []llm.Message{{Role: "user", Content: "hi"}}})
	var e *llm.Error
	if !errors.As(err, &e) || e.Code != "invalid_api_key" || e.Retryable {
		t.Fatalf("got %#v, want a non-retryable invalid_api_key", err)
	}
	if strings.Contains(err.Error(), key[:20]) || strings.Contains(err.Error(), key[8:]) {
		t.Fatalf("the echoed key reached the error: %s", err)
	}
}

func TestRotateKeys(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		key := f.sb.ModelKey()
		p, err := f.svc.Create(f.ctx, f.ws.ID, f.sandboxInput(key))
		must(t, err)
		next, _, err := vault.GenerateKey()
		must(t, err)
		rotated := vault.NewStore(d, vault.NewKeyring(f.key).WithCurrent(next))
		r, err := rotated.Rotate(f.ctx)
		must(t, err)
		if n := r.Resealed[vault.KindModelKey]; n != 1 {
			t.Fatalf("rotated %d model keys, want 1", n)
		}
		if r, err := rotated.Rotate(f.ctx); err != nil || r.Total() != 0 {
			t.Fatalf("second rotation: got %d, %v; want 0", r.Total(), err)
		}
		// Only the new key is needed now.
		c, err := llm.NewService(d, vault.NewKeyring(next), llm.Options{}).Client(f.ctx, f.ws.ID, p.ID)
		must(t, err)
		if _, err := c.Complete(f.ctx, llm.Request{Model: sandbox.ModelSmall, Messages: []llm.Message{{Role: "user", Content: "hi"}}}); err != nil {
			t.Fatalf("complete after rotation: %v", err)
		}
		if _, err := llm.NewService(d, vault.NewKeyring(f.key), llm.Options{}).Client(f.ctx, f.ws.ID, p.ID); err == nil {
			t.Fatal("the retired key still opens the provider's key")
		}
	})
}
