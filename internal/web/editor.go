package web

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"taskjuice/internal/account"
	"taskjuice/internal/apperr"
	"taskjuice/internal/catalog"
	"taskjuice/internal/connection"
	"taskjuice/internal/engine"
	"taskjuice/internal/portal"
	"taskjuice/internal/workflow"
)

// The workflow editor: a server-rendered page over the workflow's draft.
// Every change is a form POST that loads the draft, changes its graph,
// saves it and redirects back to the step it changed; bad input re-renders
// the page (422) with the message next to the field and saves nothing.
//
// The editor keeps the graph in one shape, rebuilt by relink on every save:
// the steps are a list, and the list order is the main path
// (trigger → step1 → step2 → …; a Branch continues on "true", a Loop on
// "each", a Switch on "default"). A step may instead end the workflow.
// Other paths (Branch "false", Loop "done", a Switch case) are edges chosen
// in the step's form, and may only lead forward to a later step, so the
// graph is always acyclic.

// registerEditor adds the editor's routes to the workspace mux.
func (h *Handler) registerEditor(ws router) {
	ws.HandleFunc("GET /{workspaceSlug}/workflows/{id}/edit", h.inWorkspace("workflows", h.editor))
	ws.HandleFunc("POST /{workspaceSlug}/workflows/{id}/edit/trigger", h.inWorkspace("workflows", h.editTrigger))
	ws.HandleFunc("POST /{workspaceSlug}/workflows/{id}/edit/steps", h.inWorkspace("workflows", h.addStep))
	ws.HandleFunc("POST /{workspaceSlug}/workflows/{id}/edit/steps/{node}", h.inWorkspace("workflows", h.saveStep))
	ws.HandleFunc("POST /{workspaceSlug}/workflows/{id}/edit/steps/{node}/move", h.inWorkspace("workflows", h.moveStep))
	ws.HandleFunc("POST /{workspaceSlug}/workflows/{id}/edit/steps/{node}/delete", h.inWorkspace("workflows", h.deleteStep))
	ws.HandleFunc("POST /{workspaceSlug}/workflows/{id}/edit/steps/{node}/duplicate", h.inWorkspace("workflows", h.duplicateStep))
	ws.HandleFunc("POST /{workspaceSlug}/workflows/{id}/edit/steps/{node}/test", h.inWorkspace("workflows", h.testStep))
	ws.HandleFunc("POST /{workspaceSlug}/workflows/{id}/edit/trigger/sample", h.inWorkspace("workflows", h.saveTriggerSample))
	ws.HandleFunc("POST /{workspaceSlug}/workflows/{id}/publish", h.inWorkspace("workflows", h.publishDraft))
}

// editorChecks are the checks the editor shows problems with: the same the
// publish gate applies, so what the page shows is what Publish will say.
func (h *Handler) editorChecks(ctx context.Context, ws account.Workspace, workflowID string) workflow.Checks {
	return h.workflowChecks(ctx, ws, workflowID)
}

// ---- the graph's shape ----

// mainPath is the label of the path that leads to the next step in the list.
func mainPath(k workflow.Kind) string {
	switch k {
	case workflow.NodeBranch:
		return "true"
	case workflow.NodeLoop:
		return "each"
	case workflow.NodeSwitch:
		return "default"
	}
	return ""
}

// extraPaths lists the labels of a node's other paths, set in its form.
func extraPaths(n workflow.Node) []string {
	switch n.Kind {
	case workflow.NodeBranch:
		return []string{"false"}
	case workflow.NodeLoop:
		return []string{"done"}
	case workflow.NodeSwitch:
		var out []string
		if c, err := workflow.DecodeConfig(n); err == nil {
			for _, cs := range c.(*workflow.SwitchConfig).Cases {
				if cs.Name != "" && cs.Name != "default" {
					out = append(out, cs.Name)
				}
			}
		}
		return out
	}
	return nil
}

// endsOf lists the steps that end the workflow although a step follows
// them: those without their main path. The last step needs no mark, nor
// does an arm's last step (it always leads to its join).
func endsOf(g workflow.Graph) map[string]bool {
	ends := map[string]bool{}
	joins, _ := armJoins(armSpans(g))
	for i, n := range g.Nodes {
		if i == len(g.Nodes)-1 {
			break
		}
		if _, ok := joins[i]; ok {
			continue
		}
		main := mainPath(n.Kind)
		found := false
		for _, e := range g.Edges {
			if e.From == n.ID && e.When == main {
				found = true
				break
			}
		}
		if !found {
			ends[n.ID] = true
		}
	}
	return ends
}

// relink rebuilds g's edges in the editor's shape (see the top of this
// file): the main path from the order of the steps, unless ends marks a
// step as the last one of its path; every other path kept when it is one
// the step has and it still leads forward to an existing step. A path that
// would lead back (after a move) or nowhere (after a delete) is dropped.
func relink(g *workflow.Graph, ends map[string]bool) {
	pos := map[string]int{}
	for i, n := range g.Nodes {
		pos[n.ID] = i
	}
	var edges []workflow.Edge
	if g.Trigger != nil && len(g.Nodes) > 0 {
		edges = append(edges, workflow.Edge{From: g.Trigger.ID, To: g.Nodes[0].ID})
	}
	// A Parallel step leads to its arms' first steps; an arm's last step
	// leads to the step after the last arm, where they join
	// (editorplace.go).
	joins, firsts := armJoins(armSpans(*g))
	for i, n := range g.Nodes {
		join, armLast := joins[i]
		switch {
		case n.Kind == workflow.NodeParallel && !ends[n.ID]:
			for _, a := range firsts[i] {
				edges = append(edges, workflow.Edge{From: n.ID, To: g.Nodes[a].ID})
			}
		case armLast:
			if join < len(g.Nodes) && !ends[n.ID] {
				edges = append(edges, workflow.Edge{From: n.ID, To: g.Nodes[join].ID, When: mainPath(n.Kind)})
			}
		case i+1 < len(g.Nodes) && !ends[n.ID]:
			edges = append(edges, workflow.Edge{From: n.ID, To: g.Nodes[i+1].ID, When: mainPath(n.Kind)})
		}
		for _, label := range extraPaths(n) {
			for _, e := range g.Edges {
				if e.From != n.ID || e.When != label {
					continue
				}
				if to, ok := pos[e.To]; ok && to > i {
					edges = append(edges, e)
				}
				break // one target per path
			}
		}
	}
	if edges == nil {
		edges = []workflow.Edge{}
	}
	g.Edges = edges
}

// inEditorShape reports whether g's edges are those relink would make, so
// the page can say when saving would redraw paths made elsewhere (an
// imported document).
func inEditorShape(g workflow.Graph) bool {
	c := g
	c.Edges = append([]workflow.Edge(nil), g.Edges...)
	relink(&c, endsOf(g))
	if len(c.Edges) != len(g.Edges) {
		return false
	}
	have := map[workflow.Edge]bool{}
	for _, e := range g.Edges {
		have[e] = true
	}
	for _, e := range c.Edges {
		if !have[e] {
			return false
		}
	}
	return true
}

func target(g workflow.Graph, from, label string) string {
	for _, e := range g.Edges {
		if e.From == from && e.When == label {
			return e.To
		}
	}
	return ""
}

func nodeIndex(g workflow.Graph, id string) int {
	for i, n := range g.Nodes {
		if n.ID == id {
			return i
		}
	}
	return -1
}

// newStepID is "stepN", N one more than any stepN already there.
func newStepID(g workflow.Graph) string {
	max := 0
	used := map[string]bool{}
	if g.Trigger != nil {
		used[g.Trigger.ID] = true
	}
	for _, n := range g.Nodes {
		used[n.ID] = true
		if rest, ok := strings.CutPrefix(n.ID, "step"); ok {
			if k, err := strconv.Atoi(rest); err == nil && k > max {
				max = k
			}
		}
	}
	for k := max + 1; ; k++ {
		if id := "step" + strconv.Itoa(k); !used[id] {
			return id
		}
	}
}

// stepKinds are the kinds "Add step" offers, in its order.
var stepKinds = []workflow.Kind{
	workflow.NodeAction, workflow.NodeHTTP, workflow.NodeBranch, workflow.NodeSwitch, workflow.NodeTransform,
	workflow.NodeDelay, workflow.NodeApproval, workflow.NodeLoop, workflow.NodeCallWorkflow,
	workflow.NodeAIGenerate, workflow.NodeAIExtract, workflow.NodeFilter, workflow.NodeSort, workflow.NodeCode, workflow.NodeStopError,
	workflow.NodeRespond, workflow.NodeParallel, workflow.NodeMerge,
}

var triggerKinds = []workflow.Kind{workflow.TriggerManual, workflow.TriggerWebhook, workflow.TriggerSchedule, workflow.TriggerApp, workflow.TriggerError}

var webhookAuthModes = []string{"none", "bearer", "header", "hmac-sha256", "hmac-sha512"}

// webhookTimestamps are the signed-timestamp schemes of the HMAC modes ("" is
// the body alone).
var webhookTimestamps = []string{"", "stripe", "slack", "header"}

var httpMethods = []string{"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"}

// defaultConfig is a new step's configuration.
func defaultConfig(k workflow.Kind) any {
	switch k {
	case workflow.NodeAction:
		return workflow.ActionConfig{}
	case workflow.NodeHTTP:
		return workflow.HTTPConfig{Method: "GET"}
	case workflow.NodeBranch:
		return workflow.BranchConfig{}
	case workflow.NodeSwitch:
		return workflow.SwitchConfig{Cases: []workflow.SwitchCase{}}
	case workflow.NodeTransform:
		return workflow.TransformConfig{Output: json.RawMessage(`{}`)}
	case workflow.NodeDelay:
		return workflow.DelayConfig{Duration: "15m"}
	case workflow.NodeApproval:
		return workflow.ApprovalConfig{}
	case workflow.NodeLoop:
		return workflow.LoopConfig{}
	case workflow.NodeCallWorkflow:
		return workflow.CallWorkflowConfig{}
	case workflow.NodeAIGenerate:
		return workflow.AIGenerateConfig{}
	case workflow.NodeAIExtract:
		return workflow.AIExtractConfig{Schema: json.RawMessage(`{"type":"object","properties":{}}`)}
	case workflow.NodeFilter:
		return workflow.FilterConfig{}
	case workflow.NodeSort:
		return workflow.SortConfig{Order: "asc"}
	case workflow.NodeCode:
		return workflow.CodeConfig{Source: "// $input, $trigger and $steps hold the run's data.\nreturn { ok: true };"}
	case workflow.NodeStopError:
		return workflow.StopErrorConfig{Code: "STOPPED"}
	case workflow.NodeRespond:
		return workflow.RespondConfig{Status: "200", Body: json.RawMessage(`{"ok":true}`)}
	case workflow.NodeParallel:
		return workflow.ParallelConfig{Arms: workflow.DefaultParallelArms}
	case workflow.NodeMerge:
		return workflow.MergeConfig{Mode: "append"}
	}
	return struct{}{}
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only config structs of this package reach here
	}
	return b
}

// ---- forms ----

// stepForm is a step's form as text, filled from the node or from a POST.
type stepForm struct {
	Name, Then                             string
	App, Action, Connection                string
	Inputs                                 map[string]string
	Method, URL, Headers, Body             string
	Timeout, Attempts                      string
	Condition, Value, Cases                string
	CaseTo                                 map[string]string
	Output, Duration, Until, Message       string
	Items, MaxItems, WorkflowID, Input     string
	Model, Prompt, Text, Schema, MaxTokens string
	By, Order, Source, TimeoutMS           string
	ErrorCode                              string
	RetryAttempts, RetryBackoff            string
	Status, WaitSeconds                    string
	Arms, Mode, Key                        string
	FalseTo, DoneTo                        string
	// Redact: "Don't store input and output".
	Redact  bool
	backoff float64
	binding *workflow.Binding
}

const clientProvides = "client"

func formOf(g workflow.Graph, n workflow.Node, ends map[string]bool) stepForm {
	f := stepForm{Name: n.Name, Then: "next", Inputs: map[string]string{}, CaseTo: map[string]string{}, Redact: n.Redact}
	if ends[n.ID] {
		f.Then = "end"
	}
	if b := n.Connection; b != nil {
		f.Connection = b.ID
		if b.ClientProvides {
			f.Connection = clientProvides
		}
	}
	if r := n.Retry; r != nil {
		f.RetryAttempts = strconv.Itoa(r.MaxAttempts)
		if r.BackoffSeconds != 0 {
			f.RetryBackoff = strconv.FormatFloat(r.BackoffSeconds, 'f', -1, 64)
		}
	}
	cfg, err := workflow.DecodeConfig(n)
	if err != nil {
		return f
	}
	switch c := cfg.(type) {
	case *workflow.ActionConfig:
		f.App, f.Action = c.App, c.Action
		for k, raw := range c.Inputs {
			f.Inputs[k] = jsonText(raw)
		}
	case *workflow.HTTPConfig:
		f.Method, f.URL = c.Method, c.URL
		f.Headers = headerText(c.Headers)
		f.Body = prettyJSON(c.Body)
		if c.TimeoutSeconds != 0 {
			f.Timeout = strconv.Itoa(c.TimeoutSeconds)
		}
		if c.Retry != nil {
			f.Attempts = strconv.Itoa(c.Retry.MaxAttempts)
			f.backoff = c.Retry.BackoffSeconds
		}
	case *workflow.BranchConfig:
		f.Condition = c.Condition
		f.FalseTo = target(g, n.ID, "false")
	case *workflow.SwitchConfig:
		f.Value = c.Value
		var lines []string
		for _, cs := range c.Cases {
			lines = append(lines, cs.Name+" = "+compactJSON(cs.Equals))
			f.CaseTo[cs.Name] = target(g, n.ID, cs.Name)
		}
		f.Cases = strings.Join(lines, "\n")
	case *workflow.TransformConfig:
		f.Output = prettyJSON(c.Output)
	case *workflow.DelayConfig:
		f.Duration, f.Until = c.Duration, c.Until
	case *workflow.ApprovalConfig:
		f.Message = c.Message
	case *workflow.LoopConfig:
		f.Items = c.Items
		if c.MaxItems != 0 {
			f.MaxItems = strconv.Itoa(c.MaxItems)
		}
		f.DoneTo = target(g, n.ID, "done")
	case *workflow.CallWorkflowConfig:
		f.WorkflowID = c.WorkflowID
		f.Input = prettyJSON(c.Input)
	case *workflow.AIGenerateConfig:
		f.Model, f.Message, f.Prompt = modelValue(c.Model), c.System, c.Prompt
		if c.MaxTokens != 0 {
			f.MaxTokens = strconv.Itoa(c.MaxTokens)
		}
	case *workflow.AIExtractConfig:
		f.Model, f.Message, f.Text, f.Schema = modelValue(c.Model), c.Instructions, c.Text, prettyJSON(c.Schema)
		if c.MaxTokens != 0 {
			f.MaxTokens = strconv.Itoa(c.MaxTokens)
		}
	case *workflow.FilterConfig:
		f.Items, f.Condition = c.Items, c.Condition
	case *workflow.SortConfig:
		f.Items, f.By, f.Order = c.Items, c.By, c.Order
	case *workflow.CodeConfig:
		f.Source = c.Source
		if c.TimeoutMS != 0 {
			f.TimeoutMS = strconv.Itoa(c.TimeoutMS)
		}
	case *workflow.StopErrorConfig:
		f.ErrorCode, f.Message = c.Code, c.Message
	case *workflow.ParallelConfig:
		f.Arms = armsText(*c)
	case *workflow.MergeConfig:
		f.Mode, f.Key = c.Mode, c.Key
	case *workflow.RespondConfig:
		f.Status, f.Headers, f.Body = c.Status, headerText(c.Headers), prettyJSON(c.Body)
		if c.WaitSeconds != 0 {
			f.WaitSeconds = strconv.Itoa(c.WaitSeconds)
		}
	}
	return f
}

// jsonText shows a JSON value in a text field: a string as itself, anything
// else as JSON.
func jsonText(raw json.RawMessage) string {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s
	}
	return string(raw)
}

func prettyJSON(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return string(raw)
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return string(raw)
	}
	return string(b)
}

func compactJSON(raw json.RawMessage) string {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return string(raw)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// readStepForm reads a posted step form. Missing fields keep the values of
// the node as saved, so a form that shows only some fields (before an app
// is chosen) never clears the others.
func readStepForm(pf url.Values, base stepForm) stepForm {
	f := base
	str := func(name string, into *string) {
		if vs, ok := pf[name]; ok && len(vs) > 0 {
			*into = strings.ReplaceAll(vs[0], "\r\n", "\n")
		}
	}
	str("name", &f.Name)
	if pf.Get("redactShown") != "" {
		f.Redact = pf.Get("redact") == "on"
	}
	str("then", &f.Then)
	str("app", &f.App)
	str("action", &f.Action)
	str("connection", &f.Connection)
	str("method", &f.Method)
	str("url", &f.URL)
	str("headers", &f.Headers)
	str("body", &f.Body)
	str("timeout", &f.Timeout)
	str("attempts", &f.Attempts)
	str("condition", &f.Condition)
	str("value", &f.Value)
	str("cases", &f.Cases)
	str("output", &f.Output)
	str("duration", &f.Duration)
	str("until", &f.Until)
	str("message", &f.Message)
	str("items", &f.Items)
	str("maxItems", &f.MaxItems)
	str("workflowId", &f.WorkflowID)
	str("model", &f.Model)
	str("prompt", &f.Prompt)
	str("text", &f.Text)
	str("schema", &f.Schema)
	str("maxTokens", &f.MaxTokens)
	str("input", &f.Input)
	str("by", &f.By)
	str("order", &f.Order)
	str("source", &f.Source)
	str("timeoutMs", &f.TimeoutMS)
	str("errorCode", &f.ErrorCode)
	str("retryAttempts", &f.RetryAttempts)
	str("status", &f.Status)
	str("waitSeconds", &f.WaitSeconds)
	str("arms", &f.Arms)
	str("mode", &f.Mode)
	str("key", &f.Key)
	str("retryBackoff", &f.RetryBackoff)
	str("falseTo", &f.FalseTo)
	str("doneTo", &f.DoneTo)
	f.Inputs = map[string]string{}
	for k, vs := range pf {
		if name, ok := strings.CutPrefix(k, "input."); ok && len(vs) > 0 {
			f.Inputs[name] = strings.ReplaceAll(vs[0], "\r\n", "\n")
		}
	}
	caseTo := map[string]string{}
	for k, v := range base.CaseTo {
		caseTo[k] = v
	}
	for k, vs := range pf {
		if name, ok := strings.CutPrefix(k, "caseTo."); ok && len(vs) > 0 {
			caseTo[name] = vs[0]
		}
	}
	f.CaseTo = caseTo
	return f
}

// headerText shows headers as "Name: value" lines, sorted.
func headerText(h map[string]string) string {
	names := make([]string, 0, len(h))
	for k := range h {
		names = append(names, k)
	}
	sort.Strings(names)
	lines := make([]string, len(names))
	for i, k := range names {
		lines[i] = k + ": " + h[k]
	}
	return strings.Join(lines, "\n")
}

// headerLines reads "Name: value" lines (nil for none).
func headerLines(text string, errs fieldErrors) map[string]string {
	var out map[string]string
	for k, line := range strings.Split(text, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		name = strings.TrimSpace(name)
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			errs["headers"] = "Line " + strconv.Itoa(k+1) + ": write one header per line as Name: value"
			return out
		}
		if out == nil {
			out = map[string]string{}
		}
		out[name] = strings.TrimSpace(value)
	}
	return out
}

// retryOf reads a step's retry setting from its form (nil: the default).
func retryOf(f stepForm, errs fieldErrors) *workflow.RetryPolicy {
	attempts, backoff := strings.TrimSpace(f.RetryAttempts), strings.TrimSpace(f.RetryBackoff)
	if attempts == "" && backoff == "" {
		return nil
	}
	n, err := wholeNumber(attempts)
	if err != nil {
		errs["retry"] = "Attempts: " + err.Error()
		return nil
	}
	if n == 0 {
		n = 3
	}
	r := &workflow.RetryPolicy{MaxAttempts: n}
	if backoff != "" {
		b, err := strconv.ParseFloat(backoff, 64)
		if err != nil {
			errs["retry"] = "The wait is a number of seconds, such as 1 or 0.5"
			return nil
		}
		r.BackoffSeconds = b
	}
	return r
}

// fieldErrors are messages for a form's fields, by field name.
type fieldErrors map[string]string

// apply turns the form into node n's new settings and its chosen paths, or
// says what is wrong with which field.
func (h *Handler) apply(g workflow.Graph, n workflow.Node, f stepForm, conns []connection.Connection) (workflow.Node, map[string]string, fieldErrors) {
	errs := fieldErrors{}
	paths := map[string]string{}
	n.Name = strings.TrimSpace(f.Name)
	n.Redact = f.Redact
	if n.Kind.Retries() && n.Kind != workflow.NodeHTTP {
		n.Retry = retryOf(f, errs)
	}
	if len([]rune(n.Name)) > 100 {
		errs["name"] = "A step name is at most 100 characters"
	}
	i := nodeIndex(g, n.ID)
	later := func(field, to string) string {
		if to == "" {
			return ""
		}
		if j := nodeIndex(g, to); j <= i {
			errs[field] = "Choose a later step, or the end of the workflow"
		}
		return to
	}
	var cfg any
	switch n.Kind {
	case workflow.NodeAction:
		c := workflow.ActionConfig{App: f.App, Action: f.Action, Inputs: map[string]json.RawMessage{}}
		app, ok := h.Catalog.App(f.App)
		if ok {
			if _, has := app.Action(c.Action); !has {
				c.Action = ""
				if len(app.Actions) > 0 {
					c.Action = app.Actions[0].Key
				}
			}
			if act, has := app.Action(c.Action); has {
				for _, in := range act.Inputs {
					text := strings.TrimSpace(f.Inputs[in.Name])
					if in.Type == catalog.FieldText {
						text = f.Inputs[in.Name]
					}
					if text == "" {
						continue
					}
					raw, err := inputJSON(in, text)
					if err != nil {
						errs["inputs."+in.Name] = err.Error()
						continue
					}
					c.Inputs[in.Name] = raw
				}
			}
		} else {
			c.Action = ""
		}
		if len(c.Inputs) == 0 {
			c.Inputs = nil
		}
		cfg = c
		n.Connection = nil
		switch f.Connection {
		case "":
		case clientProvides:
			n.Connection = &workflow.Binding{ClientProvides: true}
		default:
			// A connection of another app (the app just changed) is let go.
			for _, cn := range conns {
				if cn.ID == f.Connection && cn.AppKey == c.App {
					n.Connection = &workflow.Binding{ID: cn.ID}
				}
			}
		}
	case workflow.NodeHTTP:
		c := workflow.HTTPConfig{Method: strings.ToUpper(strings.TrimSpace(f.Method)), URL: strings.TrimSpace(f.URL)}
		c.Headers = headerLines(f.Headers, errs)
		if raw, err := jsonField(f.Body); err != nil {
			errs["body"] = "The body must be JSON: " + err.Error()
		} else {
			c.Body = raw
		}
		if v, err := wholeNumber(f.Timeout); err != nil {
			errs["timeoutSeconds"] = err.Error()
		} else {
			c.TimeoutSeconds = v
		}
		if v, err := wholeNumber(f.Attempts); err != nil {
			errs["retry"] = err.Error()
		} else if v != 0 {
			c.Retry = &workflow.RetryPolicy{MaxAttempts: v, BackoffSeconds: f.backoff}
		}
		cfg = c
	case workflow.NodeBranch:
		cfg = workflow.BranchConfig{Condition: strings.TrimSpace(f.Condition)}
		paths["false"] = later("falseTo", f.FalseTo)
	case workflow.NodeSwitch:
		c := workflow.SwitchConfig{Value: strings.TrimSpace(f.Value), Cases: []workflow.SwitchCase{}}
		for k, line := range strings.Split(f.Cases, "\n") {
			if strings.TrimSpace(line) == "" {
				continue
			}
			name, value, ok := strings.Cut(line, "=")
			name, value = strings.TrimSpace(name), strings.TrimSpace(value)
			if !ok || name == "" || !json.Valid([]byte(value)) {
				errs["cases"] = "Line " + strconv.Itoa(k+1) + `: write one case per line as name = JSON value, e.g. vip = "gold" or big = 1000`
				break
			}
			c.Cases = append(c.Cases, workflow.SwitchCase{Name: name, Equals: json.RawMessage(compactJSON(json.RawMessage(value)))})
			paths[name] = later("caseTo."+name, f.CaseTo[name])
		}
		cfg = c
	case workflow.NodeTransform:
		raw, err := jsonField(f.Output)
		if err != nil {
			errs["output"] = "The output must be JSON: " + err.Error()
		}
		cfg = workflow.TransformConfig{Output: raw}
	case workflow.NodeDelay:
		cfg = workflow.DelayConfig{Duration: strings.TrimSpace(f.Duration), Until: strings.TrimSpace(f.Until)}
	case workflow.NodeApproval:
		cfg = workflow.ApprovalConfig{Message: strings.TrimSpace(f.Message)}
	case workflow.NodeLoop:
		c := workflow.LoopConfig{Items: strings.TrimSpace(f.Items)}
		if v, err := wholeNumber(f.MaxItems); err != nil {
			errs["maxItems"] = err.Error()
		} else {
			c.MaxItems = v
		}
		cfg = c
		paths["done"] = later("doneTo", f.DoneTo)
	case workflow.NodeFilter:
		cfg = workflow.FilterConfig{Items: strings.TrimSpace(f.Items), Condition: strings.TrimSpace(f.Condition)}
	case workflow.NodeSort:
		cfg = workflow.SortConfig{Items: strings.TrimSpace(f.Items), By: strings.TrimSpace(f.By), Order: strings.TrimSpace(f.Order)}
	case workflow.NodeCode:
		c := workflow.CodeConfig{Source: f.Source}
		if v, err := wholeNumber(f.TimeoutMS); err != nil {
			errs["timeoutMs"] = err.Error()
		} else {
			c.TimeoutMS = v
		}
		cfg = c
	case workflow.NodeStopError:
		cfg = workflow.StopErrorConfig{Code: strings.TrimSpace(f.ErrorCode), Message: strings.TrimSpace(f.Message)}
	case workflow.NodeParallel:
		c, err := parseArms(f.Arms)
		if err != nil {
			errs["arms"] = err.Error()
		}
		cfg = c
	case workflow.NodeMerge:
		cfg = workflow.MergeConfig{Mode: strings.TrimSpace(f.Mode), Key: strings.TrimSpace(f.Key)}
	case workflow.NodeRespond:
		c := workflow.RespondConfig{Status: strings.TrimSpace(f.Status), Headers: headerLines(f.Headers, errs)}
		if raw, err := jsonField(f.Body); err != nil {
			errs["body"] = "The body must be JSON (a text answer is a JSON string, in quotes): " + err.Error()
		} else {
			c.Body = raw
		}
		if v, err := wholeNumber(f.WaitSeconds); err != nil {
			errs["waitSeconds"] = err.Error()
		} else {
			c.WaitSeconds = v
		}
		cfg = c
	case workflow.NodeCallWorkflow:
		c := workflow.CallWorkflowConfig{WorkflowID: f.WorkflowID}
		if raw, err := jsonField(f.Input); err != nil {
			errs["input"] = "The input must be JSON: " + err.Error()
		} else {
			c.Input = raw
		}
		cfg = c
	case workflow.NodeAIGenerate:
		c := workflow.AIGenerateConfig{Model: modelRef(f.Model), System: strings.TrimSpace(f.Message), Prompt: strings.TrimSpace(f.Prompt)}
		if v, err := wholeNumber(f.MaxTokens); err != nil {
			errs["maxTokens"] = err.Error()
		} else {
			c.MaxTokens = v
		}
		cfg = c
	case workflow.NodeAIExtract:
		c := workflow.AIExtractConfig{Model: modelRef(f.Model), Instructions: strings.TrimSpace(f.Message), Text: strings.TrimSpace(f.Text)}
		if v, err := wholeNumber(f.MaxTokens); err != nil {
			errs["maxTokens"] = err.Error()
		} else {
			c.MaxTokens = v
		}
		if raw, err := jsonField(f.Schema); err != nil {
			errs["schema"] = "The schema must be JSON: " + err.Error()
		} else {
			c.Schema = raw
		}
		cfg = c
	default:
		errs["kind"] = "The editor cannot change a step of this kind"
		return n, nil, errs
	}
	n.Config = mustJSON(cfg)
	return n, paths, errs
}

// modelValue and modelRef write a step's model as the form's one value,
// "providerId|model", and back.
func modelValue(m workflow.ModelRef) string {
	if m.ProviderID == "" {
		return ""
	}
	return m.ProviderID + "|" + m.Name
}

func modelRef(v string) workflow.ModelRef {
	p, m, _ := strings.Cut(v, "|")
	return workflow.ModelRef{ProviderID: p, Name: m}
}

// inputJSON encodes an action input's text as the JSON the graph holds: a
// string, unless the input takes a number, a boolean or JSON and the text is
// one. Text with {{ expressions }} stays a string either way.
func inputJSON(in catalog.Field, text string) (json.RawMessage, error) {
	trimmed := strings.TrimSpace(text)
	switch in.Type {
	case catalog.FieldNumber:
		var num json.Number
		if json.Unmarshal([]byte(trimmed), &num) == nil {
			return json.RawMessage(trimmed), nil
		}
	case catalog.FieldBoolean:
		if trimmed == "true" || trimmed == "false" {
			return json.RawMessage(trimmed), nil
		}
	case catalog.FieldJSON:
		if strings.HasPrefix(trimmed, "{") || strings.HasPrefix(trimmed, "[") {
			if !json.Valid([]byte(trimmed)) {
				return nil, errors.New(in.Label + " must be valid JSON")
			}
			return json.RawMessage(compactJSON(json.RawMessage(trimmed))), nil
		}
		if json.Valid([]byte(trimmed)) {
			return json.RawMessage(trimmed), nil
		}
	}
	return mustJSON(text), nil
}

// jsonField reads an optional JSON text field.
func jsonField(text string) (json.RawMessage, error) {
	text = strings.TrimSpace(text)
	if text == "" {
		return nil, nil
	}
	var v any
	if err := json.Unmarshal([]byte(text), &v); err != nil {
		return nil, errors.New(strings.TrimPrefix(err.Error(), "json: "))
	}
	return json.RawMessage(compactJSON(json.RawMessage(text))), nil
}

func wholeNumber(text string) (int, error) {
	text = strings.TrimSpace(text)
	if text == "" {
		return 0, nil
	}
	v, err := strconv.Atoi(text)
	if err != nil {
		return 0, errors.New("Enter a whole number")
	}
	return v, nil
}

// ---- the page ----

type triggerCard struct {
	Node               workflow.Node
	Kind, Auth, Header string
	// Replay defences of the webhook trigger.
	DeliveryHeader, Timestamp, TimestampHeader string
	Timestamps                                 []string
	Cron, Timezone                             string
	Errs                                       map[string][]string
	Problems                                   []workflow.Problem
	Kinds                                      []kindOption
	AuthModes                                  []string
	// App is the app trigger's settings (kind "app"); see apptrigger.go.
	App appTriggerCard
}

type kindOption struct {
	Kind  workflow.Kind
	Label string
}

type stepCard struct {
	Node        workflow.Node
	Sample      *engine.Sample // the step's last test (teststep.go)
	External    bool           // testing it acts outside TaskJuice
	Picker      []pickItem     // earlier samples' values (picker.go)
	KindLabel   string
	Index, Num  int
	First, Last bool
	// Prev is the step before it in the list ("" for the first).
	Prev     string
	F        stepForm
	Errs     map[string][]string
	Problems []workflow.Problem
	Later    []workflow.Node
	App      *catalog.App
	Actions  []catalog.Action
	Inputs   []inputField
	OAuth    bool
	Conns    []connOption
	Client   clientSlot
	// Models are the workspace's models, for AI steps.
	Models    []choice
	FalseTo   gotoSelect
	DoneTo    gotoSelect
	CaseTo    []gotoSelect
	Workflows []workflow.Workflow
	Methods   []string
}

// gotoSelect is a select of the step an extra path leads to: a later step,
// or "" for the end of the workflow.
type gotoSelect struct {
	Name, Case, Value string
	Later             []workflow.Node
}

type inputField struct {
	catalog.Field
	Value string
	Multi bool
}

type connOption struct {
	ID, Label string
	Status    connection.Status
}

type editorData struct {
	Workflow workflow.Workflow
	Version  workflow.Version
	HasDraft bool
	Versions []workflow.Version
	Toast    string
	Problems []workflow.Problem
	Count    int
	Trigger  triggerCard
	Steps    []stepCard
	Apps     []catalog.App
	Kinds    []kindOption
	Diagram  diagram
	// Insert is where the "Add a step" form adds (a "+" on the picture
	// chose it); empty adds at the end.
	Insert   insertion
	Reshaped bool
	// TriggerSample is the pasted sample event; SampleError says why the
	// last one pasted was refused (teststep.go).
	TriggerSample *engine.Sample
	SampleError   string
	// Runs are the workflow's latest runs, whose data a step may be
	// tested with instead of the samples.
	Runs []engine.RunRow
}

// editorInput is a form that was refused: it is shown again as typed, with
// its messages, instead of the saved values.
type editorInput struct {
	node    string // the step's id; "" with isTrigger
	isTrig  bool
	step    stepForm
	trigger triggerCard
	errs    fieldErrors
}

// editorVersion is the version the editor shows: the draft, else the
// active version (the first change makes "Draft from vN" of it), else the
// newest.
func (h *Handler) editorVersion(ctx context.Context, ws account.Workspace, wf workflow.Workflow) (workflow.Version, []workflow.Version, error) {
	versions, err := h.Workflows.Versions(ctx, ws, wf.ID)
	if err != nil {
		return workflow.Version{}, nil, err
	}
	var pick *workflow.Version
	for i := range versions {
		v := &versions[i]
		switch {
		case v.State == workflow.VersionDraft:
			return *v, versions, nil
		case v.State == workflow.VersionActive:
			pick = v
		}
	}
	if pick == nil && len(versions) > 0 {
		pick = &versions[0]
	}
	if pick == nil {
		return workflow.Version{}, nil, apperr.ErrNotFound
	}
	return *pick, versions, nil
}

// editor shows the draft. After a refused publish it comes back with
// ?check=publish: the toast says the compilation failed for as long as the
// gate still finds problems, so reloading after a fix does not repeat it.
func (h *Handler) editor(w http.ResponseWriter, r *http.Request, v view) {
	toast := ""
	if r.URL.Query().Get("check") == "publish" {
		toast = workflow.MsgCompilationFailed
	}
	h.renderEditor(w, r, v, http.StatusOK, toast, nil, nil)
}

// renderEditor shows the editor. problems, when given, are the ones a
// refused publish reported; otherwise the draft is validated afresh.
func (h *Handler) renderEditor(w http.ResponseWriter, r *http.Request, v view, status int, toast string, problems []workflow.Problem, bad *editorInput) {
	ctx := r.Context()
	wf, ok := h.loadWorkflow(w, r, v)
	if !ok {
		return
	}
	ver, versions, err := h.editorVersion(ctx, *v.Workspace, wf)
	if err != nil {
		h.errorPage(w, r, v.P, err)
		return
	}
	conns, err := h.Connections.List(ctx, *v.Workspace, "")
	if err != nil {
		h.errorPage(w, r, v.P, err)
		return
	}
	wfs, err := h.Workflows.List(ctx, *v.Workspace)
	if err != nil {
		h.errorPage(w, r, v.P, err)
		return
	}
	// Call Workflow may run an agent too.
	agents, err := h.Workflows.ListAgents(ctx, *v.Workspace)
	if err != nil {
		h.errorPage(w, r, v.P, err)
		return
	}
	wfs = append(wfs, agents...)
	bound, err := h.Workflows.ClientBindings(ctx, wf.ID)
	if err != nil {
		h.errorPage(w, r, v.P, err)
		return
	}
	clientNodes := map[string]portal.NodeState{}
	if h.Portal != nil {
		if clientNodes, err = h.Portal.NodeStates(ctx, *v.Workspace, wf.ID); err != nil {
			h.errorPage(w, r, v.P, err)
			return
		}
	}
	g := ver.Graph
	if problems == nil {
		problems = workflow.Validate(g, h.editorChecks(ctx, *v.Workspace, wf.ID))
	}
	if toast == workflow.MsgCompilationFailed && len(problems) == 0 {
		toast = ""
	}
	d := editorData{
		Workflow: wf, Version: ver, HasDraft: ver.State == workflow.VersionDraft, Versions: versions,
		Toast: toast, Count: len(problems), Apps: h.Catalog.Apps(), Reshaped: !inEditorShape(g),
	}
	for _, k := range stepKinds {
		d.Kinds = append(d.Kinds, kindOption{k, k.Label()})
	}
	var others []workflow.Workflow
	for _, o := range wfs {
		if o.ID != wf.ID {
			others = append(others, o)
		}
	}
	models, err := h.modelChoices(ctx, v.Workspace.ID)
	if err != nil {
		h.errorPage(w, r, v.P, err)
		return
	}
	samples := map[string]engine.Sample{}
	if h.Engine != nil {
		if samples, err = h.Engine.Samples(ctx, wf.ID, engine.TriggerSampleOf(ver.Graph, h.Catalog)); err != nil {
			h.errorPage(w, r, v.P, err)
			return
		}
	}
	ends := endsOf(g)
	cards := map[string]int{}
	for i, n := range g.Nodes {
		c := stepCard{Node: n, KindLabel: n.Kind.Label(), Index: i, First: i == 0, Last: i == len(g.Nodes)-1, Prev: prevID(g, i),
			F: formOf(g, n, ends), Errs: map[string][]string{}, Later: g.Nodes[i+1:], Workflows: others, Methods: httpMethods, Models: models}
		if bad != nil && !bad.isTrig && bad.node == n.ID {
			c.F = bad.step
			for k, m := range bad.errs {
				c.Errs[k] = append(c.Errs[k], m)
			}
		}
		c.Num = i + 1
		c.External = engine.HasExternalEffect(n)
		c.Picker = pickerOf(g, i, samples)
		if sm, ok := samples[n.ID]; ok {
			c.Sample = &sm
		}
		h.fillAction(&c, conns)
		h.fillClientSlot(&c, clientNodes, bound, conns)
		c.FalseTo = gotoSelect{Name: "falseTo", Value: c.F.FalseTo, Later: c.Later}
		c.DoneTo = gotoSelect{Name: "doneTo", Value: c.F.DoneTo, Later: c.Later}
		if n.Kind == workflow.NodeSwitch {
			for _, line := range strings.Split(c.F.Cases, "\n") {
				if name, _, ok := strings.Cut(line, "="); ok && strings.TrimSpace(name) != "" {
					name = strings.TrimSpace(name)
					c.CaseTo = append(c.CaseTo, gotoSelect{Name: "caseTo." + name, Case: name, Value: c.F.CaseTo[name], Later: c.Later})
				}
			}
		}
		cards[n.ID] = len(d.Steps)
		d.Steps = append(d.Steps, c)
	}
	d.Trigger = triggerCardOf(g)
	if sm, ok := samples[engine.TriggerSampleID(g)]; ok {
		d.TriggerSample = &sm
	}
	if r.URL.Query().Get("sample") == "invalid" {
		d.SampleError = msgSampleNotJSON
	}
	if bad != nil && bad.isTrig {
		d.Trigger.Kind, d.Trigger.Auth, d.Trigger.Header = bad.trigger.Kind, bad.trigger.Auth, bad.trigger.Header
		d.Trigger.Cron, d.Trigger.Timezone = bad.trigger.Cron, bad.trigger.Timezone
		d.Trigger.App = bad.trigger.App
		for k, m := range bad.errs {
			d.Trigger.Errs[k] = append(d.Trigger.Errs[k], m)
		}
	}
	h.fillAppTrigger(&d.Trigger.App, conns)
	h.fillTriggerClientSlot(&d.Trigger, clientNodes, bound, conns)
	for _, p := range problems {
		switch i, ok := cards[p.NodeID]; {
		case ok:
			c := &d.Steps[i]
			if shownFields(*c)[p.Field] {
				c.Errs[p.Field] = append(c.Errs[p.Field], p.Message)
			} else {
				c.Problems = append(c.Problems, p)
			}
		case p.NodeID != "" && g.Trigger != nil && p.NodeID == g.Trigger.ID:
			if triggerFields[p.Field] || (d.Trigger.Kind == string(workflow.TriggerApp) && strings.HasPrefix(p.Field, "inputs.")) {
				d.Trigger.Errs[p.Field] = append(d.Trigger.Errs[p.Field], p.Message)
			} else {
				d.Trigger.Problems = append(d.Trigger.Problems, p)
			}
		default:
			d.Problems = append(d.Problems, p)
		}
	}
	tests := map[string]*engine.Sample{}
	for _, c := range d.Steps {
		tests[c.Node.ID] = c.Sample
	}
	d.Diagram = drawGraph(g, problems, tests)
	if h.Engine != nil {
		if runs, err := h.Engine.List(r.Context(), v.Workspace.ID, engine.ListFilter{WorkflowID: wf.ID, Limit: 10}); err == nil {
			d.Runs = runs
		}
	}
	d.Insert = insertionOf(g, r.URL.Query())
	v.Title, v.Data = "Edit "+wf.Name+" · Workflows", d
	h.render(w, r, status, "editor", v)
}

var triggerFields = map[string]bool{"auth": true, "header": true, "cron": true, "deliveryHeader": true, "timestamp": true, "timestampHeader": true,
	"app": true, "trigger": true, "connection": true, "intervalSeconds": true}

// shownFields are the fields a step's card shows messages next to; the
// others are listed at the top of the card.
func shownFields(c stepCard) map[string]bool {
	m := map[string]bool{"name": true}
	switch c.Node.Kind {
	case workflow.NodeAction:
		m["app"], m["action"], m["connection"] = true, true, true
		for _, in := range c.Inputs {
			m["inputs."+in.Name] = true
		}
	case workflow.NodeHTTP:
		for _, f := range []string{"method", "url", "headers", "body", "timeoutSeconds", "retry"} {
			m[f] = true
		}
	case workflow.NodeBranch:
		m["condition"] = true
	case workflow.NodeSwitch:
		m["value"], m["cases"] = true, true
	case workflow.NodeTransform:
		m["output"] = true
	case workflow.NodeDelay:
		m["duration"] = true
	case workflow.NodeApproval:
		m["message"] = true
	case workflow.NodeLoop:
		m["items"], m["maxItems"] = true, true
	case workflow.NodeCallWorkflow:
		m["workflowId"] = true
	case workflow.NodeAIGenerate:
		m["model.providerId"], m["model.name"], m["prompt"], m["maxTokens"] = true, true, true, true
	case workflow.NodeAIExtract:
		m["model.providerId"], m["model.name"], m["text"], m["schema"], m["maxTokens"] = true, true, true, true, true
	case workflow.NodeFilter:
		m["items"], m["condition"] = true, true
	case workflow.NodeSort:
		m["items"], m["by"], m["order"] = true, true, true
	case workflow.NodeCode:
		m["source"], m["timeoutMs"] = true, true
	case workflow.NodeStopError:
		m["code"], m["message"] = true, true
	case workflow.NodeRespond:
		m["status"], m["headers"], m["body"], m["waitSeconds"] = true, true, true, true
	case workflow.NodeParallel:
		m["arms"] = true
	case workflow.NodeMerge:
		m["mode"], m["key"] = true, true
	}
	if c.Node.Kind.Retries() {
		m["retry"] = true
	}
	return m
}

// fillAction adds what an action's card offers: the app's actions, the
// chosen action's inputs and the workspace's connections of the app.
func (h *Handler) fillAction(c *stepCard, conns []connection.Connection) {
	if c.Node.Kind != workflow.NodeAction {
		return
	}
	app, ok := h.Catalog.App(c.F.App)
	if !ok {
		return
	}
	c.App, c.Actions, c.OAuth = &app, app.Actions, app.IsOAuth()
	if act, ok := app.Action(c.F.Action); ok {
		for _, in := range act.Inputs {
			c.Inputs = append(c.Inputs, inputField{Field: in, Value: c.F.Inputs[in.Name], Multi: in.Type == catalog.FieldText || in.Type == catalog.FieldJSON})
		}
	}
	for _, cn := range conns {
		if cn.AppKey == app.Key {
			c.Conns = append(c.Conns, connOption{ID: cn.ID, Label: cn.Label, Status: cn.Status})
		}
	}
}

func triggerCardOf(g workflow.Graph) triggerCard {
	t := triggerCard{Errs: map[string][]string{}, AuthModes: webhookAuthModes, Timestamps: webhookTimestamps}
	for _, k := range triggerKinds {
		t.Kinds = append(t.Kinds, kindOption{k, k.Label()})
	}
	if g.Trigger == nil {
		t.Kind = string(workflow.TriggerManual)
		return t
	}
	t.Node, t.Kind = *g.Trigger, string(g.Trigger.Kind)
	cfg, err := workflow.DecodeConfig(*g.Trigger)
	if err != nil {
		return t
	}
	switch c := cfg.(type) {
	case *workflow.WebhookConfig:
		t.Auth, t.Header = c.Auth, c.Header
		t.DeliveryHeader, t.Timestamp, t.TimestampHeader = c.DeliveryHeader, c.Timestamp, c.TimestampHeader
	case *workflow.ScheduleConfig:
		t.Cron, t.Timezone = c.Cron, c.Timezone
	case *workflow.AppTriggerConfig:
		t.App = appTriggerCardOf(*g.Trigger, c)
	}
	return t
}

// ---- changes ----

// change runs fn on the graph the editor shows, then relinks, saves (making
// the draft if there is none yet) and redirects to anchor with a flash. fn
// may refuse the input instead: the editor is shown again and nothing is
// saved.
func (h *Handler) change(w http.ResponseWriter, r *http.Request, v view, flash string, fn func(g *workflow.Graph, ends map[string]bool) (anchor string, bad *editorInput, err error)) {
	if err := r.ParseForm(); err != nil {
		h.errorPage(w, r, v.P, errBadForm)
		return
	}
	ctx := r.Context()
	wf, ok := h.loadWorkflow(w, r, v)
	if !ok {
		return
	}
	ver, _, err := h.editorVersion(ctx, *v.Workspace, wf)
	if err != nil {
		h.errorPage(w, r, v.P, err)
		return
	}
	g := ver.Graph
	g.Nodes = append([]workflow.Node(nil), g.Nodes...)
	if g.Trigger == nil {
		g.Trigger = workflow.StarterGraph().Trigger
	}
	ends := endsOf(g)
	anchor, bad, err := fn(&g, ends)
	if err != nil {
		h.errorPage(w, r, v.P, err)
		return
	}
	if bad != nil {
		h.renderEditor(w, r, v, http.StatusUnprocessableEntity, "", nil, bad)
		return
	}
	relink(&g, ends)
	if _, err := h.Workflows.SaveDraft(ctx, *v.Workspace, wf.ID, g, v.P.User.ID); err != nil {
		h.refuse(w, r, v.P, h.editorURL(v, wf.ID), err)
		return
	}
	setFlash(w, flash)
	to := h.editorURL(v, wf.ID)
	if anchor != "" {
		to += "#" + anchor
	}
	redirect(w, r, to)
}

func (h *Handler) editorURL(v view, id string) string {
	return "/" + v.Workspace.Slug + "/workflows/" + url.PathEscape(id) + "/edit"
}

// errNoStep is the error for a step id that is not in the draft.
var errNoStep = apperr.NotFound("There is no such step in this workflow; it may have been deleted.")

func (h *Handler) editTrigger(w http.ResponseWriter, r *http.Request, v view) {
	h.change(w, r, v, "trigger-saved", func(g *workflow.Graph, _ map[string]bool) (string, *editorInput, error) {
		pf := r.PostForm
		t := triggerCardOf(*g)
		for name, into := range map[string]*string{"kind": &t.Kind, "auth": &t.Auth, "header": &t.Header, "cron": &t.Cron, "timezone": &t.Timezone,
			"deliveryHeader": &t.DeliveryHeader, "timestamp": &t.Timestamp, "timestampHeader": &t.TimestampHeader} {
			if vs, ok := pf[name]; ok && len(vs) > 0 {
				*into = strings.TrimSpace(vs[0])
			}
		}
		kind := workflow.Kind(t.Kind)
		if !kind.IsTrigger() {
			return "", &editorInput{isTrig: true, trigger: t, errs: fieldErrors{"kind": "Choose manual, webhook, schedule, an app trigger or the Error trigger"}}, nil
		}
		var cfg any = workflow.ManualConfig{}
		switch kind {
		case workflow.TriggerWebhook:
			cfg = workflow.WebhookConfig{Auth: orElse(t.Auth, "none"), Header: t.Header, DeliveryHeader: t.DeliveryHeader,
				Timestamp: t.Timestamp, TimestampHeader: t.TimestampHeader}
		case workflow.TriggerSchedule:
			cfg = workflow.ScheduleConfig{Cron: t.Cron, Timezone: t.Timezone}
		}
		var binding *workflow.Binding
		if kind == workflow.TriggerApp {
			a, errs := readAppTriggerForm(pf, t.App)
			if len(errs) > 0 {
				t.App = a
				return "", &editorInput{isTrig: true, trigger: t, errs: errs}, nil
			}
			cfg, binding = a.config(), a.binding()
		}
		node := *g.Trigger
		node.Kind, node.Config, node.Connection = kind, mustJSON(cfg), binding
		g.Trigger = &node
		return "trigger", nil, nil
	})
}

func orElse(vals ...string) string {
	for _, s := range vals {
		if s != "" {
			return s
		}
	}
	return ""
}

func (h *Handler) addStep(w http.ResponseWriter, r *http.Request, v view) {
	h.change(w, r, v, "step-added", func(g *workflow.Graph, _ map[string]bool) (string, *editorInput, error) {
		kind := workflow.Kind(r.PostForm.Get("kind"))
		if !kind.IsNode() {
			return "", nil, apperr.Invalid("kind", "Choose the kind of step to add.")
		}
		if err := roomForAStep(*g); err != nil {
			return "", nil, err
		}
		id := newStepID(*g)
		n := workflow.Node{ID: id, Kind: kind, Name: kind.Label(), Config: mustJSON(defaultConfig(kind))}
		p, err := place(*g, r.PostForm.Get("after"), r.PostForm.Get("path"), r.PostForm.Get("to"))
		if err != nil {
			return "", nil, err
		}
		p.insert(g, n)
		return "step-" + id, nil, nil
	})
}

// duplicateStep inserts a copy of a step (its settings, connection and
// retries; a new id) right after it.
func (h *Handler) duplicateStep(w http.ResponseWriter, r *http.Request, v view) {
	id := r.PathValue("node")
	h.change(w, r, v, "step-duplicated", func(g *workflow.Graph, ends map[string]bool) (string, *editorInput, error) {
		i := nodeIndex(*g, id)
		if i < 0 {
			return "", nil, errNoStep
		}
		if err := roomForAStep(*g); err != nil {
			return "", nil, err
		}
		n := g.Nodes[i]
		n.ID = newStepID(*g)
		n.Name = clip(strings.TrimSpace(n.Name+" (copy)"), 100)
		n.Config = append(json.RawMessage(nil), n.Config...)
		if n.Connection != nil {
			b := *n.Connection
			n.Connection = &b
		}
		if n.Retry != nil {
			rp := *n.Retry
			n.Retry = &rp
		}
		rightAfter(*g, i).insert(g, n)
		return "step-" + n.ID, nil, nil
	})
}

func (h *Handler) saveStep(w http.ResponseWriter, r *http.Request, v view) {
	id := r.PathValue("node")
	h.change(w, r, v, "step-saved", func(g *workflow.Graph, ends map[string]bool) (string, *editorInput, error) {
		i := nodeIndex(*g, id)
		if i < 0 {
			return "", nil, errNoStep
		}
		conns, err := h.Connections.List(r.Context(), *v.Workspace, "")
		if err != nil {
			return "", nil, err
		}
		n := g.Nodes[i]
		f := readStepForm(r.PostForm, formOf(*g, n, ends))
		updated, paths, errs := h.apply(*g, n, f, conns)
		if len(errs) > 0 {
			return "", &editorInput{node: id, step: f, errs: errs}, nil
		}
		g.Nodes[i] = updated
		ends[id] = f.Then == "end" && i < len(g.Nodes)-1
		// The paths the form chose replace the step's other paths.
		var kept []workflow.Edge
		for _, e := range g.Edges {
			if e.From != id || e.When == mainPath(n.Kind) {
				kept = append(kept, e)
			}
		}
		labels := make([]string, 0, len(paths))
		for l := range paths {
			labels = append(labels, l)
		}
		sort.Strings(labels)
		for _, l := range labels {
			if paths[l] != "" {
				kept = append(kept, workflow.Edge{From: id, To: paths[l], When: l})
			}
		}
		g.Edges = kept
		return "step-" + id, nil, nil
	})
}

// moveStep moves a step one place up or down the list (dir), or to the
// place a "+" names (after, path, to: where the picture's drag dropped it,
// or the card's "Move after").
func (h *Handler) moveStep(w http.ResponseWriter, r *http.Request, v view) {
	id := r.PathValue("node")
	h.change(w, r, v, "step-moved", func(g *workflow.Graph, _ map[string]bool) (string, *editorInput, error) {
		i := nodeIndex(*g, id)
		if i < 0 {
			return "", nil, errNoStep
		}
		if r.PostForm.Has("after") {
			return "step-" + id, nil, moveTo(g, i, r.PostForm.Get("after"), r.PostForm.Get("path"), r.PostForm.Get("to"))
		}
		j := i + 1
		if r.PostForm.Get("dir") == "up" {
			j = i - 1
		}
		if j >= 0 && j < len(g.Nodes) {
			g.Nodes[i], g.Nodes[j] = g.Nodes[j], g.Nodes[i]
		}
		return "step-" + id, nil, nil
	})
}

func prevID(g workflow.Graph, i int) string {
	if i == 0 {
		return ""
	}
	return g.Nodes[i-1].ID
}

// moveTo takes the step at index i out of the list (and out of its arm)
// and puts it where a step added on the arrow after/path/to would go.
func moveTo(g *workflow.Graph, i int, after, path, to string) error {
	if n := g.Nodes[i]; after == n.ID || to == n.ID {
		return nil // onto an arrow of its own: where it is
	}
	n := takeOut(g, i)
	p, err := place(*g, after, path, to)
	if err != nil {
		return err
	}
	p.insert(g, n)
	return nil
}

func (h *Handler) deleteStep(w http.ResponseWriter, r *http.Request, v view) {
	id := r.PathValue("node")
	h.change(w, r, v, "step-deleted", func(g *workflow.Graph, ends map[string]bool) (string, *editorInput, error) {
		i := nodeIndex(*g, id)
		if i < 0 {
			return "", nil, errNoStep
		}
		takeOut(g, i)
		delete(ends, id)
		if i > 0 {
			return "step-" + g.Nodes[i-1].ID, nil, nil
		}
		return "steps", nil, nil
	})
}

// publishDraft publishes the draft through the publish gate; a refusal
// shows the editor again with the toast and every problem at its node.
func (h *Handler) publishDraft(w http.ResponseWriter, r *http.Request, v view) {
	ctx := r.Context()
	wf, ok := h.loadWorkflow(w, r, v)
	if !ok {
		return
	}
	_, err := h.Workflows.Publish(ctx, *v.Workspace, wf.ID, "", h.editorChecks(ctx, *v.Workspace, wf.ID))
	var ce *workflow.CompileError
	switch {
	case errors.As(err, &ce):
		// The editor runs the publish gate again and shows what it found.
		redirect(w, r, h.editorURL(v, wf.ID)+"?check=publish")
		return
	case err != nil:
		h.refuse(w, r, v.P, h.editorURL(v, wf.ID), err)
		return
	}
	setFlash(w, "workflow-published")
	redirect(w, r, h.editorURL(v, wf.ID))
}

// ---- the picture ----

// diagram is the picture of the graph: the trigger and the steps as
// boxes, each on the row below the deepest step leading to it, so the arms
// of a Branch, a Switch or a Parallel sit side by side; the main path's
// arrows carry a "+" that adds a step there.
type diagram struct {
	Width, Height int
	Boxes         []diagramBox
	Lines         []diagramLine
}

type diagramBox struct {
	X, Y, W, H   int
	TX, TY, SY   int
	Title, Sub   string
	Href         string
	Trigger, Bad bool
	// Test is the mark of the step's last test ("✓ 12 ms", "✗ CODE");
	// Failed says it failed.
	Test   string
	MX     int
	Failed bool
}

type diagramLine struct {
	Path   string
	Label  string
	LX, LY int
	Side   bool
	// Plus is the "+" that adds a step on this arrow (the main path):
	// After names the step it follows, PX, PY where it is drawn.
	Plus bool
	Stub bool // the "+" after the last step, on a line to nowhere
	// After, OnPath and To name the arrow: the step it leaves, by which
	// path, to which step.
	After, OnPath, To string
	AfterName         string
	PX, PY            int
}

const (
	dgX, dgTop, dgBoxW, dgBoxH, dgRow, dgCol = 16, 12, 200, 46, 82, 224
)

// ranks places each step on a row: one below the deepest step leading to
// it, so the arms of a Branch, a Switch or a Parallel sit side by side on
// the same rows. A step nothing leads to keeps the row after the previous
// one in the list.
func ranks(nodes []workflow.Node, edges []workflow.Edge) map[string]int {
	rank := map[string]int{}
	pos := map[string]int{}
	for i, n := range nodes {
		pos[n.ID] = i
	}
	// The editor keeps paths going forward in the list, so list order is a
	// topological order; an imported graph that is not is placed as well
	// as one pass allows.
	for i, n := range nodes {
		r := -1
		for _, e := range edges {
			if e.To == n.ID {
				if p, ok := pos[e.From]; ok && p < i {
					r = max(r, rank[e.From])
				}
			}
		}
		switch {
		case r >= 0:
			rank[n.ID] = r + 1
		case i > 0:
			rank[n.ID] = rank[nodes[i-1].ID] + 1
		}
	}
	return rank
}

// columns places each step in the column of the first step leading to it
// when that place on its row is free (so an arm stays in its column),
// else in the first free column of its row.
func columns(nodes []workflow.Node, edges []workflow.Edge, rank map[string]int) map[string]int {
	col := map[string]int{}
	taken := map[[2]int]bool{}
	for _, n := range nodes {
		r, want := rank[n.ID], -1
		for _, e := range edges {
			if c, ok := col[e.From]; e.To == n.ID && ok {
				want = c
				break
			}
		}
		if want < 0 || taken[[2]int{r, want}] {
			want = 0
			for taken[[2]int{r, want}] {
				want++
			}
		}
		col[n.ID], taken[[2]int{r, want}] = want, true
	}
	return col
}

func drawGraph(g workflow.Graph, problems []workflow.Problem, tests map[string]*engine.Sample) diagram {
	bad := map[string]bool{}
	for _, p := range problems {
		bad[p.NodeID] = true
	}
	var nodes []workflow.Node
	if g.Trigger != nil {
		nodes = append(nodes, *g.Trigger)
	}
	nodes = append(nodes, g.Nodes...)
	var d diagram
	if len(nodes) == 0 {
		d.Height = dgTop * 2
		return d
	}
	rank := ranks(nodes, g.Edges)
	col := columns(nodes, g.Edges, rank)
	rows, cols := 0, 1
	index := map[string]int{}
	for i, n := range nodes {
		index[n.ID] = i
		rows, cols = max(rows, rank[n.ID]+1), max(cols, col[n.ID]+1)
	}
	at := func(id string) (int, int) { return dgX + col[id]*dgCol, dgTop + rank[id]*dgRow }
	for i, n := range nodes {
		x, y := at(n.ID)
		title := n.Name
		if title == "" {
			title = n.Kind.Label()
		}
		b := diagramBox{X: x, Y: y, W: dgBoxW, H: dgBoxH, TX: x + 12, TY: y + 19, SY: y + 36,
			Title: clip(title, 26), Sub: clip(n.ID+" · "+n.Kind.Label(), 30), Bad: bad[n.ID], Trigger: i == 0 && g.Trigger != nil}
		b.Href = "#step-" + n.ID
		if b.Trigger {
			b.Href = "#trigger"
		}
		if t := tests[n.ID]; t != nil && !b.Trigger {
			b.MX = x + dgBoxW - 8
			if t.Error != nil {
				b.Test, b.Failed = "✗ "+clip(t.Error.Code, 12), true
			} else {
				b.Test = "✓ " + strconv.FormatInt(t.DurationMS, 10) + " ms"
			}
		}
		d.Boxes = append(d.Boxes, b)
	}
	title := func(id string) string {
		if n, ok := g.Node(id); ok && n.Name != "" {
			return n.Name
		}
		if g.Trigger != nil && g.Trigger.ID == id {
			return "the trigger"
		}
		return id
	}
	spans := armSpans(g)
	for _, e := range g.Edges {
		from, ok1 := index[e.From]
		to, ok2 := index[e.To]
		if !ok1 || !ok2 {
			continue
		}
		x1, y1 := at(e.From)
		x2, y2 := at(e.To)
		x1, y1, x2 = x1+dgBoxW/2, y1+dgBoxH, x2+dgBoxW/2
		l := diagramLine{Label: e.When, Side: to != from+1}
		if x1 == x2 {
			l.Path = "M " + itoa(x1) + " " + itoa(y1) + " V " + itoa(y2-2)
		} else {
			mid := (y1 + y2) / 2
			l.Path = "M " + itoa(x1) + " " + itoa(y1) + " C " + itoa(x1) + " " + itoa(mid) + " " + itoa(x2) + " " + itoa(mid) + " " + itoa(x2) + " " + itoa(y2-2)
		}
		l.LX, l.LY = (x1+x2)/2+14, y1+(dgRow-dgBoxH)/2+4
		if path, to, ok := plusOn(g, spans, e); ok {
			l.Plus, l.After, l.AfterName, l.OnPath, l.To = true, e.From, title(e.From), path, to
			l.PX, l.PY = (x1+x2)/2, y1+(dgRow-dgBoxH)/2
			if l.Side {
				l.PX, l.PY = (x1+x2)/2, (y1+y2)/2 // the curve's middle
			}
		}
		d.Lines = append(d.Lines, l)
	}
	d.Width = dgX*2 + (cols-1)*dgCol + dgBoxW + 40
	d.Height = dgTop*2 + rows*dgRow - (dgRow - dgBoxH)
	// A "+" under the last step adds one at the end.
	last := nodes[len(nodes)-1]
	lx, ly := at(last.ID)
	lx, ly = lx+dgBoxW/2, ly+dgBoxH
	d.Lines = append(d.Lines, diagramLine{Path: "M " + itoa(lx) + " " + itoa(ly) + " V " + itoa(ly+14), Plus: true, After: last.ID, AfterName: title(last.ID),
		PX: lx, PY: ly + 24, Stub: true})
	d.Height = max(d.Height, ly+40)
	return d
}

func itoa(i int) string { return strconv.Itoa(i) }

// clip shortens s to n runes with an ellipsis.
func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
