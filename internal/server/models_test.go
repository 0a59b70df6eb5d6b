package server_test

import (
	"context"
	"encoding/json"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"taskjuice/internal/account"
	"taskjuice/internal/llm"
	"taskjuice/internal/sandbox"
	"taskjuice/internal/spend"
)

// providerBody is a model provider of the sandbox's model endpoint, as a
// client of the API sends it.
func (e *env) providerBody(name, key string) string {
	b, _ := json.Marshal(map[string]any{
		"name": name, "baseUrl": e.srv.URL + "/sandbox/v1", "apiKey": key,
		"models": []map[string]any{
			{"model": sandbox.ModelSmall, "inputUsdPerMTok": "2.50", "outputUsdPerMTok": 10, "maxOutputTokens": 1000},
			{"model": sandbox.ModelLarge, "inputUsdPerMTok": 5, "outputUsdPerMTok": "15.75"},
		},
	})
	return string(b)
}

type providerJSON struct {
	Provider struct {
		ID, Name, BaseURL, KeyHint string
		HasKey                     bool
		Models                     []struct {
			Model                             string
			InputUsdPerMTok, OutputUsdPerMTok string
			MaxOutputTokens                   int
		}
	}
}

// complete makes one model call through the workspace's provider, as the
// engine would: it proves the stored key works.
func (e *env) complete(t *testing.T, ws account.Workspace, providerID string) llm.Response {
	t.Helper()
	c, err := e.models.Client(context.Background(), ws.ID, providerID)
	must(t, err)
	res, err := c.Complete(context.Background(), llm.Request{Model: sandbox.ModelSmall, Messages: []llm.Message{{Role: llm.RoleUser, Content: "Say hello"}}})
	must(t, err)
	return res
}

func TestModelProvidersAPI(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		key := e.sandbox.ModelKey()
		owner := e.signIn("owner@a.example")
		res := owner.api("POST", "/api/v1/workspaces/acme/model-providers", e.providerBody("Sandbox", key))
		wantStatus(t, "create provider", res, 201)
		var created providerJSON
		must(t, json.Unmarshal([]byte(res.Body), &created))
		p := created.Provider
		if p.ID == "" || !p.HasKey || p.KeyHint != key[:3]+"…"+key[len(key)-4:] || len(p.Models) != 2 {
			t.Fatalf("created provider: got %+v", p)
		}
		if m := p.Models[1]; m.InputUsdPerMTok != "5.00" || m.OutputUsdPerMTok != "15.75" || m.MaxOutputTokens != llm.DefaultMaxOutput {
			t.Fatalf("second model: got %+v, want $5.00 / $15.75 and the default max tokens", m)
		}
		if loc := res.Header.Get("Location"); loc != "/api/v1/workspaces/acme/model-providers/"+p.ID {
			t.Fatalf("Location: got %q", loc)
		}
		if before := e.sandbox.Stats().Model.Requests; e.complete(t, e.acme, p.ID).Content == "" || e.sandbox.Stats().Model.Requests != before+1 {
			t.Fatal("the stored key did not reach the sandbox")
		}

		list := owner.api("GET", "/api/v1/workspaces/acme/model-providers", "")
		wantStatus(t, "list providers", list, 200)
		if !strings.Contains(list.Body, `"id":"`+p.ID+`"`) || !strings.Contains(list.Body, `"hasKey":true`) {
			t.Fatalf("list: %s", list.Body)
		}
		wantStatus(t, "get provider", owner.api("GET", "/api/v1/workspaces/acme/model-providers/"+p.ID, ""), 200)
		// Beta is another workspace of the same account: not there.
		wantStatus(t, "provider under another workspace", owner.api("GET", "/api/v1/workspaces/beta/model-providers/"+p.ID, ""), 404)

		// Without apiKey an update keeps the key; a member may update.
		member := e.signIn("member@a.example")
		up := member.api("PUT", "/api/v1/workspaces/acme/model-providers/"+p.ID,
			`{"name":"Sandbox models","baseUrl":"`+e.srv.URL+`/sandbox/v1","models":[{"model":"sandbox-small","inputUsdPerMTok":"1","outputUsdPerMTok":"2"}]}`)
		wantStatus(t, "update provider", up, 200)
		if !strings.Contains(up.Body, `"name":"Sandbox models"`) || !strings.Contains(up.Body, `"keyHint":"`+p.KeyHint+`"`) {
			t.Fatalf("update: %s", up.Body)
		}
		e.complete(t, e.acme, p.ID)

		// Every problem at once, per field; nothing stored.
		bad := owner.api("POST", "/api/v1/workspaces/acme/model-providers",
			`{"name":"","baseUrl":"ftp://x","apiKey":"","models":[{"model":"m","inputUsdPerMTok":"-1","outputUsdPerMTok":"x"}]}`)
		wantStatus(t, "invalid provider", bad, 422)
		var eb struct {
			Error struct{ Fields map[string]string }
		}
		must(t, json.Unmarshal([]byte(bad.Body), &eb))
		for _, f := range []string{"name", "baseUrl", "apiKey", "models[0].inputUsdPerMTok", "models[0].outputUsdPerMTok"} {
			if eb.Error.Fields[f] == "" {
				t.Errorf("invalid provider: no message for %s in %v", f, eb.Error.Fields)
			}
		}
		dup := owner.api("POST", "/api/v1/workspaces/acme/model-providers", e.providerBody("sandbox models", key))
		wantStatus(t, "duplicate name", dup, 409)
		wantStatus(t, "unknown field", owner.api("POST", "/api/v1/workspaces/acme/model-providers", `{"name":"x","key":"y"}`), 400)

		// Account B sees nothing of A's; a client has no API over staff routes.
		ownerB := e.signIn("owner@b.example")
		for _, path := range []string{"/api/v1/workspaces/acme/model-providers", "/api/v1/workspaces/acme/model-providers/" + p.ID, "/api/v1/workspaces/acme/spend"} {
			r := ownerB.api("GET", path, "")
			wantStatus(t, "account B on "+path, r, 404)
		}
		wantStatus(t, "account B deletes", ownerB.api("DELETE", "/api/v1/workspaces/acme/model-providers/"+p.ID, ""), 404)
		wantStatus(t, "account B's provider id under bravo", ownerB.api("GET", "/api/v1/workspaces/bravo/model-providers/"+p.ID, ""), 404)
		client := e.signIn("client@acme.example")
		wantStatus(t, "client lists providers", client.api("GET", "/api/v1/workspaces/acme/model-providers", ""), 403)
		wantStatus(t, "client creates a provider", client.api("POST", "/api/v1/workspaces/acme/model-providers", e.providerBody("Mine", key)), 403)

		wantStatus(t, "delete provider", owner.api("DELETE", "/api/v1/workspaces/acme/model-providers/"+p.ID, ""), 204)
		wantStatus(t, "deleted provider", owner.api("GET", "/api/v1/workspaces/acme/model-providers/"+p.ID, ""), 404)
		if list := owner.api("GET", "/api/v1/workspaces/acme/model-providers", ""); strings.TrimSpace(list.Body) != `{"providers":[]}` {
			t.Fatalf("list after delete: %s", list.Body)
		}
	})
}

func TestSpendCapAPIAndCostPage(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		key := e.sandbox.ModelKey()
		admin := e.signIn("admin@a.example")
		member := e.signIn("member@a.example")
		wantStatus(t, "add provider", admin.api("POST", "/api/v1/workspaces/acme/model-providers", e.providerBody("Sandbox", key)), 201)

		// Members cannot set the cap.
		r := member.api("PUT", "/api/v1/workspaces/acme/spend/cap", `{"capUsd":"5.00"}`)
		wantStatus(t, "member sets the cap", r, 403)
		if _, msg := apiError(t, r); msg != account.MsgAdminRequired {
			t.Fatalf("member's 403: got %q", msg)
		}
		r = admin.api("PUT", "/api/v1/workspaces/acme/spend/cap", `{"capUsd":"5.00"}`)
		wantStatus(t, "admin sets the cap", r, 200)
		if !strings.Contains(r.Body, `"capUsd":"5.00"`) || !strings.Contains(r.Body, `"capStatus":"Under cap"`) {
			t.Fatalf("cap set: %s", r.Body)
		}
		r = admin.api("PUT", "/api/v1/workspaces/acme/spend/cap", `{"capUsd":2.5}`)
		wantStatus(t, "cap as a number", r, 200)
		for body, want := range map[string]int{`{"capUsd":"-1"}`: 422, `{"capUsd":"lots"}`: 422, `{}`: 422, `{"capUsd":true}`: 400} {
			wantStatus(t, "cap "+body, admin.api("PUT", "/api/v1/workspaces/acme/spend/cap", body), want)
		}

		// Spend as the engine makes it: $2.10 of $2.50 is near the cap.
		res, err := e.spend.Reserve(ctx, e.acme.ID, "test/call-1", 2_500_000, spend.Call{Model: sandbox.ModelSmall})
		must(t, err)
		must(t, e.spend.Settle(ctx, res, 2_100_000, llm.Usage{PromptTokens: 1000, CompletionTokens: 100}))
		if _, err := e.spend.Reserve(ctx, e.acme.ID, "test/call-2", 500_000, spend.Call{}); err == nil {
			t.Fatal("a call over the cap was reserved")
		}
		r = member.api("GET", "/api/v1/workspaces/acme/spend", "")
		wantStatus(t, "spend summary", r, 200)
		var sum struct {
			Spend struct {
				SpentUsd, CapUsd, CapStatus string
				PercentOfCap                int
				Period                      struct{ Key, Label string }
				Days                        []struct{ SpentUsd string }
			}
		}
		must(t, json.Unmarshal([]byte(r.Body), &sum))
		per := spend.PeriodOf(time.Now())
		if s := sum.Spend; s.SpentUsd != "2.10" || s.CapUsd != "2.50" || s.CapStatus != "Near cap" || s.PercentOfCap != 84 || s.Period.Key != per.Key() || len(s.Days) != len(per.Days()) {
			t.Fatalf("summary: got %+v", s)
		}

		page := admin.get("/acme/analytics/costs")
		wantStatus(t, "cost page", page, 200)
		for _, want := range []string{"spend this period", "hard cap", "cap status", ">$2.10<", ">$2.50<", ">Near cap<",
			`<svg`, `role="img"`, `<title id="costs-chart-title">Spend per day, ` + per.Label() + `</title>`, "<desc", "Spend per day as a table",
			`action="/acme/analytics/costs/cap"`, `href="/acme/settings/models"`, "Sandbox", `href="/acme/analytics/costs" aria-current="page"`} {
			if !strings.Contains(page.Body, want) {
				t.Errorf("cost page lacks %q", want)
			}
		}
		if strings.Contains(page.Body, "<script") && strings.Contains(page.Body, "cdn") {
			t.Error("the cost page loads a script from elsewhere")
		}

		// The member sees the page, not the form; the form refuses them.
		mp := member.get("/acme/analytics/costs")
		wantStatus(t, "member's cost page", mp, 200)
		if strings.Contains(mp.Body, `action="/acme/analytics/costs/cap"`) || !strings.Contains(mp.Body, "Only the account's owner and admins can change it") {
			t.Fatal("member's cost page: the cap form must give way to a note")
		}
		r = member.post("/acme/analytics/costs/cap", url.Values{"cap": {"100"}})
		wantStatus(t, "member posts the cap", r, 403)
		if !strings.Contains(r.Body, account.MsgAdminRequired) {
			t.Fatalf("member's 403 page lacks %q", account.MsgAdminRequired)
		}

		r = wantKept(t, admin, "malformed cap", admin.post("/acme/analytics/costs/cap", url.Values{"cap": {"1,000"}}), "/acme/analytics/costs")
		if !strings.Contains(r.Body, "The cap must be a dollar amount such as 2.50") || !strings.Contains(r.Body, `value="1,000"`) {
			t.Fatal("malformed cap: the message and the input must show")
		}
		wantRedirect(t, "admin saves the cap", admin.post("/acme/analytics/costs/cap", url.Values{"cap": {"$3"}}), "/acme/analytics/costs")
		page = admin.get("/acme/analytics/costs")
		if !strings.Contains(page.Body, "Spend cap saved.") || !strings.Contains(page.Body, ">$3.00<") || !strings.Contains(page.Body, ">Under cap<") {
			t.Fatal("after saving $3: want the flash, the new cap and Under cap")
		}
		wantRedirect(t, "admin removes the cap", admin.post("/acme/analytics/costs/cap", url.Values{"cap": {""}}), "/acme/analytics/costs")
		if page := admin.get("/acme/analytics/costs"); !strings.Contains(page.Body, ">No cap<") {
			t.Fatal("after removing the cap the tiles must say No cap")
		}

		// The 80% notification reached the bell, linking to the page.
		notes := admin.get("/acme/notifications")
		if !strings.Contains(notes.Body, "Spend at 80% of the cap") || !strings.Contains(notes.Body, `href="/acme/analytics/costs"`) {
			t.Fatal("notifications lack the 80% spend alert")
		}

		// A client goes back to the portal; another account finds nothing.
		client := e.signIn("client@acme.example")
		wantRedirect(t, "client on the cost page", client.get("/acme/analytics/costs"), "/portal")
		wantRedirect(t, "client on the models page", client.get("/acme/settings/models"), "/portal")
		ownerB := e.signIn("owner@b.example")
		wantStatus(t, "account B on the cost page", ownerB.get("/acme/analytics/costs"), 404)
		wantStatus(t, "account B sets A's cap", ownerB.api("PUT", "/api/v1/workspaces/acme/spend/cap", `{"capUsd":"1"}`), 404)
		wantStatus(t, "account B posts A's cap", ownerB.post("/acme/analytics/costs/cap", url.Values{"cap": {"1"}}), 404)
	})
}

func TestModelProvidersPage(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		key := e.sandbox.ModelKey()
		member := e.signIn("member@a.example")
		page := member.get("/acme/settings/models")
		wantStatus(t, "models page", page, 200)
		if !strings.Contains(page.Body, "No model provider yet.") || !strings.Contains(page.Body, `type="password" name="apiKey" value=""`) {
			t.Fatal("models page: want the empty list and the form")
		}

		// A refused form shows each message by its field and never echoes
		// the key.
		form := url.Values{"name": {""}, "baseUrl": {e.srv.URL + "/sandbox/v1"}, "apiKey": {key},
			"model_0": {sandbox.ModelSmall}, "input_0": {"-1"}, "output_0": {"10"}, "maxTokens_0": {""},
			"model_1": {""}, "input_1": {""}, "output_1": {""}, "maxTokens_1": {""},
			"model_2": {sandbox.ModelLarge}, "input_2": {"5"}, "output_2": {"15"}, "maxTokens_2": {"many"}}
		r := member.post("/acme/settings/models", form)
		wantStatus(t, "invalid provider form", r, 422)
		for _, want := range []string{"Name must be 1–100 characters", "The input price cannot be negative", "Max output tokens must be 1–1000000", `value="` + sandbox.ModelLarge + `"`} {
			if !strings.Contains(r.Body, want) {
				t.Errorf("refused form lacks %q", want)
			}
		}

		form.Set("name", "Sandbox")
		form.Set("input_0", "2.5")
		form.Set("maxTokens_2", "2048")
		wantRedirect(t, "add provider", member.post("/acme/settings/models", form), "/acme/settings/models")
		page = member.get("/acme/settings/models")
		if !strings.Contains(page.Body, "Model provider saved.") || !strings.Contains(page.Body, key[:3]+"…"+key[len(key)-4:]) ||
			!strings.Contains(page.Body, "$2.50 / $10.00") || !strings.Contains(page.Body, "up to 2048 tokens out") {
			t.Fatal("models page after adding: want the flash, the key hint and the prices")
		}
		list, err := e.models.List(context.Background(), e.acme.ID)
		must(t, err)
		if len(list) != 1 || len(list[0].Models) != 2 {
			t.Fatalf("stored: got %+v, want one provider with the two filled lines", list)
		}
		id := list[0].ID
		e.complete(t, e.acme, id)

		// Editing without a key keeps it.
		edit := member.get("/acme/settings/models/" + id)
		wantStatus(t, "edit page", edit, 200)
		if !strings.Contains(edit.Body, "Leave this empty to keep it") || !strings.Contains(edit.Body, `value="Sandbox"`) {
			t.Fatal("edit page: want the form filled, the key left out")
		}
		form.Set("apiKey", "")
		form.Set("name", "Sandbox renamed")
		wantRedirect(t, "edit provider", member.post("/acme/settings/models/"+id, form), "/acme/settings/models")
		e.complete(t, e.acme, id)
		if p, _ := e.models.Get(context.Background(), e.acme.ID, id); p.Name != "Sandbox renamed" {
			t.Fatalf("after editing: got %q", p.Name)
		}

		// The cost page lists it and links to the page.
		costs := member.get("/acme/analytics/costs")
		if !strings.Contains(costs.Body, "Sandbox renamed") || !strings.Contains(costs.Body, `href="/acme/settings/models/`+id+`"`) {
			t.Fatal("the cost page must list the provider with a link to it")
		}

		ownerB := e.signIn("owner@b.example")
		wantStatus(t, "account B edits A's provider", ownerB.get("/acme/settings/models/"+id), 404)
		wantStatus(t, "account B deletes via its workspace", ownerB.post("/bravo/settings/models/"+id+"/delete", nil), 404)
		wantStatus(t, "another workspace's provider", member.get("/beta/settings/models/"+id), 404)

		wantRedirect(t, "delete provider", member.post("/acme/settings/models/"+id+"/delete", nil), "/acme/settings/models")
		if page := member.get("/acme/settings/models"); !strings.Contains(page.Body, "Model provider deleted.") || strings.Contains(page.Body, "Sandbox renamed") {
			t.Fatal("after deleting: want the flash and no provider")
		}
	})
}

// TestBrowserCostsAndModels adds a provider and sets the cap the way a
// person does, and looks at the cost page's tiles and chart.
func TestBrowserCostsAndModels(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		onceInBrowser(t)
		// Spend on a few days of this period, as settled calls.
		per := spend.PeriodOf(time.Now())
		today := time.Now().UTC().Day()
		var spent llm.Money
		for i, day := range []int{1, today / 2, today} {
			if day < 1 {
				continue
			}
			spent += llm.Money(400_000 * (i + 1))
			at := per.Start.AddDate(0, 0, day-1)
			_, err := e.db.Write().ExecContext(context.Background(), `INSERT INTO spend_entries (id, workspace_id, ref, status, reserved_micros, cost_micros, period, day, created_at, reserved_at, settled_at)
				VALUES ($1, $2, $3, 'settled', $4, $4, $5, $6, $7, $7, $7)`,
				"e"+strconv.Itoa(i), e.acme.ID, "seed-"+strconv.Itoa(i), int64(400_000*(i+1)), per.Key(), at.Format("2006-01-02"), at)
			must(t, err)
		}
		ctx := newBrowser(t)
		err := chromedp.Do(ctx,
			chromedp.Navigate(e.srv.URL+"/signin"),
			chromedp.SendKeys(`input[name=email]`, "admin@a.example"),
			chromedp.SendKeys(`input[name=password]`, pw),
			chromedp.Submit(`input[name=password]`),
			chromedp.WaitVisible(`.tiles`),
			chromedp.Navigate(e.srv.URL+"/acme/analytics/costs"),
			chromedp.WaitVisible(`a[href="/acme/settings/models"]`),
			chromedp.Click(`a.button[href="/acme/settings/models"]`),
			chromedp.WaitVisible(`input[name=apiKey]`),
			chromedp.SendKeys(`input[name=name]`, "Sandbox"),
			chromedp.Evaluate[chromedp.Void](`document.querySelector("input[name=baseUrl]").value = `+strconv.Quote(e.srv.URL+"/sandbox/v1")),
			chromedp.SendKeys(`input[name=apiKey]`, e.sandbox.ModelKey()),
			chromedp.SendKeys(`input[name=model_0]`, sandbox.ModelSmall),
			chromedp.SendKeys(`input[name=input_0]`, "2.50"),
			chromedp.SendKeys(`input[name=output_0]`, "10"),
			chromedp.Submit(`input[name=model_0]`),
		)
		if err != nil {
			t.Fatalf("add a provider: %v", err)
		}
		waitFlash(t, ctx, "Model provider saved.")
		screenshot(t, ctx, "model-providers")
		if got := text(t, ctx, `table.table tbody tr td strong`); got != "Sandbox" {
			t.Fatalf("providers table: got %q", got)
		}

		err = chromedp.Do(ctx,
			chromedp.Navigate(e.srv.URL+"/acme/analytics/costs"),
			chromedp.WaitVisible(`input[name=cap]`),
			chromedp.SendKeys(`input[name=cap]`, "5"),
			chromedp.Submit(`input[name=cap]`),
		)
		if err != nil {
			t.Fatalf("set the cap: %v", err)
		}
		waitFlash(t, ctx, "Spend cap saved.")
		screenshot(t, ctx, "costs")
		for sel, want := range map[string]string{`[data-tile=spend]`: spent.String(), `[data-tile=cap]`: "$5.00", `[data-tile=status]`: string(spend.StatusOf(spent, 5*llm.Dollar))} {
			if got := text(t, ctx, sel); got != want {
				t.Errorf("%s: got %q, want %q", sel, got, want)
			}
		}
		// The chart's name is what a screen reader announces.
		name, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("costs-chart-title").textContent`))
		must(t, err)
		if want := "Spend per day, " + per.Label(); name != want {
			t.Errorf("chart title: got %q, want %q", name, want)
		}
		bars, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("svg rect").length`))
		must(t, err)
		if bars != len(per.Days()) {
			t.Fatalf("chart: got %d bars, want one per day (%d)", bars, len(per.Days()))
		}
	})
}
