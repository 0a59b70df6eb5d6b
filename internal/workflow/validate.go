package workflow

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"taskjuice/internal/catalog"
	"taskjuice/internal/expr"
)

// Publish gate messages people see.
const (
	MsgTriggerInactiveConnection = "Trigger node has an inactive connection"
	MsgActionInactiveConnection  = "Action node has an inactive connection"
	MsgAgentInactiveConnection   = "Agent tool has an inactive connection"
	MsgCompilationFailed         = "Workflow compilation failed"
)

// Problem is one reason a graph cannot be published, tied to a node (and a
// field of its config) where it has one, so the editor can show it there.
type Problem struct {
	NodeID  string `json:"nodeId,omitempty"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

func (p Problem) String() string {
	if p.NodeID == "" {
		return p.Message
	}
	if p.Field == "" {
		return p.NodeID + ": " + p.Message
	}
	return p.NodeID + "." + p.Field + ": " + p.Message
}

// Checks are what validation asks of the rest of the system. A nil func
// skips its check (a draft being edited); Publish requires them all.
type Checks struct {
	// Apps is the app catalog, for action nodes.
	Apps *catalog.Catalog
	// Expressions compiles every {{ expression }} in a JSON value.
	Expressions func(raw json.RawMessage) error
	// Connection reports a bound connection's app and status; ok is false
	// when there is no such connection in the workflow's workspace.
	Connection func(id string) (app, status string, ok bool)
	// Cron checks a schedule's expression and time zone.
	Cron func(expr, timezone string) error
	// Workflow reports whether a workflow that a Call Workflow node names
	// exists in the workspace and is published.
	Workflow func(id string) bool
	// Model reports whether a model provider of the workspace offers the
	// model (ok false: no such provider).
	Model func(providerID, model string) (offered, ok bool)
	// ClientNode tells, for a node whose client provides the connection,
	// the connection the client bound to it (empty until they connect) and
	// whether a request to connect it has been sent to the client. Nil
	// treats every such node as not connected.
	ClientNode func(nodeID string) (connectionID string, requested bool)
	// ConnectionHost refuses (with a message naming the allowed hosts) a
	// URL an HTTP step would send a bound connection's credential to when
	// the connection's app does not declare its host, nor the connection
	// allow it. Nil skips the check; the run-time check stays.
	ConnectionHost func(connectionID, rawURL string) error
	// AppTrigger reports whether TaskJuice can poll an app's trigger. Nil
	// accepts every polling trigger the catalog declares.
	AppTrigger func(app, trigger string) bool
}

var nodeIDPattern = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]{0,62}$`)

// Limits of a graph.
const (
	MaxNodes        = 500
	MaxLoopItems    = 10000
	MaxHTTPTimeout  = 300
	MaxHTTPAttempts = 10
	MaxDelay        = 30 * 24 * time.Hour
)

// Validate returns every problem that keeps g from being published, in a
// stable order (graph-level first, then by node order).
func Validate(g Graph, c Checks) []Problem {
	v := &validator{g: g, c: c, ids: map[string]Kind{}}
	v.structure()
	for i := range g.Nodes {
		v.node(g.Nodes[i])
	}
	if g.Trigger != nil {
		v.node(*g.Trigger)
	}
	v.edges()
	return v.sorted()
}

type validator struct {
	g     Graph
	c     Checks
	ids   map[string]Kind
	order map[string]int
	out   []Problem
}

func (v *validator) add(node, field, format string, args ...any) {
	v.out = append(v.out, Problem{NodeID: node, Field: field, Message: fmt.Sprintf(format, args...)})
}

func (v *validator) sorted() []Problem {
	sort.SliceStable(v.out, func(i, j int) bool {
		oi, oj := v.rank(v.out[i].NodeID), v.rank(v.out[j].NodeID)
		return oi < oj
	})
	return v.out
}

func (v *validator) rank(id string) int {
	if id == "" {
		return -2
	}
	if v.g.Trigger != nil && id == v.g.Trigger.ID {
		return -1
	}
	if r, ok := v.order[id]; ok {
		return r
	}
	return len(v.order)
}

func (v *validator) structure() {
	v.order = map[string]int{}
	if v.g.Schema != SchemaVersion {
		v.add("", "", "Unknown document version %d (this TaskJuice reads version %d)", v.g.Schema, SchemaVersion)
	}
	if v.g.Trigger == nil {
		v.add("", "", "The workflow needs a trigger")
	} else {
		t := v.g.Trigger
		switch {
		case !nodeIDPattern.MatchString(t.ID):
			v.add(t.ID, "", "Node ids start with a letter and hold only letters, digits and underscores (at most 63)")
		case !t.Kind.IsTrigger():
			v.add(t.ID, "", "The trigger must be manual, webhook or schedule, not %q", t.Kind)
		}
		v.ids[t.ID] = t.Kind
	}
	if len(v.g.Nodes) == 0 {
		v.add("", "", "Add at least one step after the trigger")
	}
	if len(v.g.Nodes) > MaxNodes {
		v.add("", "", "A workflow holds at most %d steps", MaxNodes)
	}
	for i, n := range v.g.Nodes {
		v.order[n.ID] = i
		switch {
		case !nodeIDPattern.MatchString(n.ID):
			v.add(n.ID, "", "Node ids start with a letter and hold only letters, digits and underscores (at most 63)")
		case v.ids[n.ID] != "":
			v.add(n.ID, "", "Two nodes share the id %q", n.ID)
		case n.Kind.IsTrigger():
			v.add(n.ID, "", "A workflow has exactly one trigger; %q is a second one", n.ID)
		case !n.Kind.IsNode():
			v.add(n.ID, "", "Unknown node kind %q", n.Kind)
		}
		if _, dup := v.ids[n.ID]; !dup {
			v.ids[n.ID] = n.Kind
		}
	}
}

// paths lists the labelled outgoing paths a kind must or may have.
func paths(k Kind, cfg any) (allowed map[string]bool, required []string) {
	switch k {
	case NodeBranch:
		return map[string]bool{"true": true, "false": true}, []string{"true"}
	case NodeLoop:
		return map[string]bool{"each": true, "done": true}, []string{"each"}
	case NodeSwitch:
		allowed = map[string]bool{"default": true}
		if sc, ok := cfg.(*SwitchConfig); ok {
			for _, c := range sc.Cases {
				allowed[c.Name] = true
			}
		}
		return allowed, nil
	}
	return map[string]bool{"": true}, nil
}

func (v *validator) edges() {
	if v.g.Trigger == nil {
		return
	}
	out := map[string][]string{}
	labels := map[string]map[string]bool{}
	seen := map[Edge]bool{}
	for _, e := range v.g.Edges {
		fromKind, okFrom := v.ids[e.From]
		_, okTo := v.ids[e.To]
		switch {
		case !okFrom:
			v.add("", "", "An edge starts at %q, which is not a node", e.From)
			continue
		case !okTo:
			v.add(e.From, "", "An edge leads to %q, which is not a node", e.To)
			continue
		case e.To == v.g.Trigger.ID:
			v.add(e.From, "", "Nothing can lead back to the trigger")
			continue
		case e.From == e.To:
			v.add(e.From, "", "A node cannot lead to itself")
			continue
		case seen[e]:
			v.add(e.From, "", "The edge to %q is there twice", e.To)
			continue
		}
		seen[e] = true
		var cfg any
		if n := v.find(e.From); n != nil {
			cfg, _ = DecodeConfig(*n)
		}
		allowed, _ := paths(fromKind, cfg)
		if !allowed[e.When] {
			if e.When == "" {
				v.add(e.From, "", "Say which path of this %s leads to %q", fromKind.Label(), e.To)
			} else {
				v.add(e.From, "", "A %s has no path %q", fromKind.Label(), e.When)
			}
			continue
		}
		out[e.From] = append(out[e.From], e.To)
		if labels[e.From] == nil {
			labels[e.From] = map[string]bool{}
		}
		labels[e.From][e.When] = true
	}
	for _, n := range v.g.Nodes {
		cfg, _ := DecodeConfig(n)
		_, required := paths(n.Kind, cfg)
		for _, r := range required {
			if !labels[n.ID][r] {
				v.add(n.ID, "", "Connect the %q path of this %s", r, n.Kind.Label())
			}
		}
	}
	if len(out[v.g.Trigger.ID]) == 0 && len(v.g.Nodes) > 0 {
		v.add(v.g.Trigger.ID, "", "Connect the trigger to the first step")
	}
	// Reachability and cycles in one depth-first walk from the trigger.
	const (
		unseen = iota
		active
		done
	)
	state := map[string]int{}
	cycle := false
	var walk func(id string)
	walk = func(id string) {
		state[id] = active
		for _, next := range out[id] {
			switch state[next] {
			case active:
				if !cycle {
					v.add(id, "", "This step leads back to %q: workflows cannot go in circles; use a Loop", next)
				}
				cycle = true
			case unseen:
				walk(next)
			}
		}
		state[id] = done
	}
	walk(v.g.Trigger.ID)
	for _, n := range v.g.Nodes {
		if state[n.ID] == unseen && nodeIDPattern.MatchString(n.ID) {
			v.add(n.ID, "", "This step cannot be reached from the trigger")
		}
	}
	if !cycle {
		v.nestedLoops()
	}
}

// nestedLoops refuses an Agent inside a Loop's body (what its "each" path
// reaches before its "done" path); Loops themselves nest.
func (v *validator) nestedLoops() {
	for _, n := range v.g.Nodes {
		if n.Kind != NodeLoop {
			continue
		}
		for id := range v.g.LoopBody(n.ID) {
			if inner, ok := v.g.Node(id); ok && inner.Kind == NodeAgent {
				v.add(id, "", "An Agent cannot sit inside a Loop's steps yet")
			}
		}
	}
}

// MaxRetryBackoffSeconds bounds a step's first retry wait.
const MaxRetryBackoffSeconds = 3600

// Retries reports whether a kind takes a retry setting: the steps with an
// external effect.
func (k Kind) Retries() bool {
	switch k {
	case NodeAction, NodeHTTP, NodeAIGenerate, NodeAIExtract:
		return true
	}
	return false
}

// retry checks a step's retry setting.
func (v *validator) retry(n Node) {
	r := n.Retry
	switch {
	case r == nil:
	case !n.Kind.Retries():
		v.add(n.ID, "retry", "Retries are a setting of steps with an external effect (App action, HTTP Request, AI steps), not of a %s", n.Kind.Label())
	case r.MaxAttempts < 1 || r.MaxAttempts > MaxHTTPAttempts:
		v.add(n.ID, "retry", "Retries: 1–%d attempts in all", MaxHTTPAttempts)
	case r.BackoffSeconds < 0 || r.BackoffSeconds > MaxRetryBackoffSeconds:
		v.add(n.ID, "retry", "The wait before the first retry is 0–%d seconds", MaxRetryBackoffSeconds)
	}
}

// respond checks a Respond to Webhook step: a webhook trigger, a status
// code, headers it may set, a wait within bounds, not redacted, not in a
// loop.
func (v *validator) respond(n Node, c *RespondConfig) {
	if v.g.Trigger == nil || v.g.Trigger.Kind != TriggerWebhook {
		v.add(n.ID, "", "Respond to Webhook answers the webhook that started the run: give the workflow a Webhook trigger")
	}
	if st := strings.TrimSpace(c.Status); st != "" && !strings.Contains(st, "{{") {
		if code, err := strconv.Atoi(st); err != nil || code < 200 || code > 599 {
			v.add(n.ID, "status", "The status is an HTTP status code from 200 to 599, e.g. 200 or 404")
		}
	}
	for name := range c.Headers {
		if !ResponseHeaderAllowed(name) {
			v.add(n.ID, "headers", "The header %q cannot be set here: Content-Type, Cache-Control, Location and X- headers can", name)
		}
	}
	if c.WaitSeconds < 0 || c.WaitSeconds > MaxRespondWaitSeconds {
		v.add(n.ID, "waitSeconds", "The caller is held at most %d seconds", MaxRespondWaitSeconds)
	}
	if n.Redact {
		v.add(n.ID, "redact", "The answer is read from the step's output: a Respond to Webhook step cannot be redacted")
	}
	for _, l := range v.g.Nodes {
		if l.Kind == NodeLoop && v.g.LoopBody(l.ID)[n.ID] {
			v.add(n.ID, "", "A webhook is answered once: Respond to Webhook cannot sit inside a Loop's steps")
		}
	}
}

// ResponseHeaderAllowed reports whether a Respond to Webhook step may set
// a header.
func ResponseHeaderAllowed(name string) bool {
	switch http.CanonicalHeaderKey(strings.TrimSpace(name)) {
	case "Content-Type", "Cache-Control", "Location":
		return true
	}
	n := strings.ToLower(strings.TrimSpace(name))
	return strings.HasPrefix(n, "x-") && len(n) > 2 && len(n) <= 100 && !strings.ContainsAny(n, " :\r\n")
}

// notInLoop refuses a step that cannot sit inside a Loop's steps yet.
func (v *validator) notInLoop(n Node) {
	for _, l := range v.g.Nodes {
		if l.Kind == NodeLoop && v.g.LoopBody(l.ID)[n.ID] {
			v.add(n.ID, "", "A %s cannot sit inside a Loop's steps yet", n.Kind.Label())
		}
	}
}

// stopCode is the shape of a Stop and Error step's code.
var stopCode = regexp.MustCompile(`^[A-Z][A-Z0-9_]{0,63}$`)

// items checks the list a Filter or Sort step works on.
func (v *validator) items(n Node, items string) {
	if strings.TrimSpace(items) == "" {
		v.add(n.ID, "items", "Enter the list of items, e.g. {{ $steps.find_orders.data.orders }}")
	}
}

// itemExpr checks an expression evaluated against each item: written
// without {{ }}, and compiling.
func (v *validator) itemExpr(n Node, field, src, missing string) {
	switch {
	case strings.TrimSpace(src) == "":
		v.add(n.ID, field, "%s", missing)
	case strings.Contains(src, "{{"):
		v.add(n.ID, field, "Write this without {{ }}: it is evaluated against each item ($ is the item)")
	default:
		if _, err := expr.Compile(src); err != nil {
			v.add(n.ID, field, "%s", err.Error())
		}
	}
}

func (v *validator) find(id string) *Node {
	if v.g.Trigger != nil && v.g.Trigger.ID == id {
		return v.g.Trigger
	}
	for i := range v.g.Nodes {
		if v.g.Nodes[i].ID == id {
			return &v.g.Nodes[i]
		}
	}
	return nil
}

func (v *validator) node(n Node) {
	if !n.Kind.IsTrigger() && !n.Kind.IsNode() {
		return
	}
	cfg, err := DecodeConfig(n)
	if err != nil {
		v.add(n.ID, "config", "The settings of this %s are not valid: %s", n.Kind.Label(), strings.TrimPrefix(err.Error(), "json: "))
		return
	}
	if v.c.Expressions != nil && len(n.Config) > 0 && n.Kind != NodeCode {
		if err := v.c.Expressions(n.Config); err != nil {
			v.add(n.ID, "config", "%s", err.Error())
		}
	}
	v.binding(n, cfg)
	v.retry(n)
	if n.Redact {
		switch {
		case n.Kind.IsTrigger():
			v.add(n.ID, "redact", "A trigger's payload is what its runs start from: it cannot be redacted")
		case n.Kind == NodeApproval || n.Kind == NodeCallWorkflow || n.Kind == NodeAgent:
			v.add(n.ID, "redact", "A %s's answer arrives later and is kept with the run: it cannot be redacted", n.Kind.Label())
		}
	}
	switch c := cfg.(type) {
	case *WebhookConfig:
		if !webhookAuthModes[c.Auth] {
			v.add(n.ID, "auth", "Choose how callers authenticate: none, bearer, header, hmac-sha256 or hmac-sha512")
		}
		hmacMode := strings.HasPrefix(c.Auth, "hmac-")
		schemeHeader := c.Timestamp == "stripe" || c.Timestamp == "slack"
		if (c.Auth == "header" || (hmacMode && !schemeHeader)) && strings.TrimSpace(c.Header) == "" {
			v.add(n.ID, "header", "Name the header that carries the secret or signature")
		}
		switch {
		case !webhookTimestamps[c.Timestamp]:
			v.add(n.ID, "timestamp", "Choose how the caller signs a timestamp: stripe, slack, header, or none")
		case c.Timestamp != "" && !hmacMode:
			v.add(n.ID, "timestamp", "A signed timestamp needs an HMAC mode (hmac-sha256 or hmac-sha512)")
		case c.Timestamp == "header" && !validHeaderName(c.TimestampHeader):
			v.add(n.ID, "timestampHeader", "Name the header that carries the signed timestamp (Unix seconds)")
		}
		if c.DeliveryHeader != "" && !validHeaderName(c.DeliveryHeader) {
			v.add(n.ID, "deliveryHeader", "A header name has letters, digits and dashes only, e.g. X-GitHub-Delivery")
		}
	case *ScheduleConfig:
		if strings.TrimSpace(c.Cron) == "" {
			v.add(n.ID, "cron", "Enter a cron expression, e.g. 0 9 * * 1-5")
		} else if v.c.Cron != nil {
			if err := v.c.Cron(c.Cron, c.Timezone); err != nil {
				v.add(n.ID, "cron", "%s", err.Error())
			}
		}
	case *ActionConfig:
		v.action(n, c)
	case *AppTriggerConfig:
		v.appTrigger(n, c)
	case *HTTPConfig:
		switch strings.ToUpper(c.Method) {
		case "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD":
		default:
			v.add(n.ID, "method", "Method must be GET, POST, PUT, PATCH, DELETE or HEAD")
		}
		if strings.TrimSpace(c.URL) == "" {
			v.add(n.ID, "url", "Enter the URL to call")
		} else if !strings.Contains(c.URL, "{{") {
			if u, err := url.Parse(c.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				v.add(n.ID, "url", "The URL must start with http:// or https://")
			}
		}
		if c.TimeoutSeconds < 0 || c.TimeoutSeconds > MaxHTTPTimeout {
			v.add(n.ID, "timeoutSeconds", "Timeout must be 1–%d seconds", MaxHTTPTimeout)
		}
		if c.Retry != nil && (c.Retry.MaxAttempts < 1 || c.Retry.MaxAttempts > MaxHTTPAttempts || c.Retry.BackoffSeconds < 0) {
			v.add(n.ID, "retry", "Retries: 1–%d attempts, and a backoff that is not negative", MaxHTTPAttempts)
		}
	case *BranchConfig:
		if strings.TrimSpace(c.Condition) == "" {
			v.add(n.ID, "condition", "Enter the condition that picks the path")
		}
	case *SwitchConfig:
		if strings.TrimSpace(c.Value) == "" {
			v.add(n.ID, "value", "Enter the value to compare")
		}
		if len(c.Cases) == 0 {
			v.add(n.ID, "cases", "Add at least one case")
		}
		names := map[string]bool{}
		for _, cs := range c.Cases {
			switch {
			case strings.TrimSpace(cs.Name) == "" || cs.Name == "default":
				v.add(n.ID, "cases", "Every case needs a name other than \"default\"")
			case names[cs.Name]:
				v.add(n.ID, "cases", "Two cases are named %q", cs.Name)
			}
			names[cs.Name] = true
		}
	case *TransformConfig:
		if len(c.Output) == 0 {
			v.add(n.ID, "output", "Describe the output of the transform")
		}
	case *DelayConfig:
		switch {
		case c.Duration == "" && c.Until == "":
			v.add(n.ID, "duration", "Enter how long to wait, or until when")
		case c.Duration != "" && c.Until != "":
			v.add(n.ID, "duration", "Wait for a duration or until a time, not both")
		case c.Duration != "" && !strings.Contains(c.Duration, "{{"):
			d, err := time.ParseDuration(c.Duration)
			if err != nil || d <= 0 || d > MaxDelay {
				v.add(n.ID, "duration", "Enter a duration such as 90s, 15m or 48h, at most 30 days")
			}
		}
	case *ApprovalConfig:
		if strings.TrimSpace(c.Message) == "" {
			v.add(n.ID, "message", "Say what the approver is deciding")
		}
	case *LoopConfig:
		if strings.TrimSpace(c.Items) == "" {
			v.add(n.ID, "items", "Enter the list to loop over")
		}
		if c.MaxItems < 0 || c.MaxItems > MaxLoopItems {
			v.add(n.ID, "maxItems", "A loop runs at most %d items", MaxLoopItems)
		}
	case *FilterConfig:
		v.items(n, c.Items)
		v.itemExpr(n, "condition", c.Condition, "Enter the condition each item must meet, e.g. price > 10")
	case *SortConfig:
		v.items(n, c.Items)
		v.itemExpr(n, "by", c.By, "Enter what to sort by, e.g. created or customer.name")
		if c.Order != "" && c.Order != "asc" && c.Order != "desc" {
			v.add(n.ID, "order", "Sort order is asc or desc")
		}
	case *CodeConfig:
		switch {
		case strings.TrimSpace(c.Source) == "":
			v.add(n.ID, "source", "Write the code to run; what it returns is the step's output")
		case len(c.Source) > MaxCodeSource:
			v.add(n.ID, "source", "The code is longer than %d KiB", MaxCodeSource>>10)
		}
		if c.TimeoutMS < 0 || c.TimeoutMS > MaxCodeTimeoutMS {
			v.add(n.ID, "timeoutMs", "A Code step runs at most %d ms", MaxCodeTimeoutMS)
		}
	case *RespondConfig:
		v.respond(n, c)
	case *ParallelConfig:
		if len(v.g.Successors(n.ID, "")) < 2 {
			v.add(n.ID, "", "A Parallel step starts two or more arms: lead it to two or more steps")
		}
		if c.Arms < 0 || c.Arms > MaxParallelArms || len(c.Steps) > MaxParallelArms || len(c.Steps) == 1 {
			v.add(n.ID, "arms", "A Parallel step has 2–%d arms", MaxParallelArms)
		}
		if len(c.Steps) > 0 && c.Arms != 0 && c.Arms != len(c.Steps) {
			v.add(n.ID, "arms", "Give the steps of each of the %d arms", c.Arms)
		}
		for _, k := range c.Steps {
			if k < 1 || k > MaxNodes {
				v.add(n.ID, "arms", "Each arm has 1–%d steps", MaxNodes)
				break
			}
		}
		v.notInLoop(n)
	case *MergeConfig:
		switch c.Mode {
		case "", "append", "position":
		case "key":
			if strings.TrimSpace(c.Key) == "" {
				v.add(n.ID, "key", "Name the field the arms' items are matched on, e.g. id")
			}
		default:
			v.add(n.ID, "mode", "Merge by append, position or key")
		}
		if len(v.g.Predecessors(n.ID)) < 2 {
			v.add(n.ID, "", "A Merge joins two or more arms: lead two or more steps into it")
		}
		v.notInLoop(n)
	case *StopErrorConfig:
		if !stopCode.MatchString(c.Code) {
			v.add(n.ID, "code", "The error code is 1–64 capital letters, digits and underscores, e.g. CUSTOMER_MISSING")
		}
		if strings.TrimSpace(c.Message) == "" {
			v.add(n.ID, "message", "Say why the run stops")
		}
	case *AgentConfig:
		v.agent(n, c)
	case *AIGenerateConfig:
		v.model(n, "model", c.Model)
		v.maxTokens(n, c.MaxTokens)
		if strings.TrimSpace(c.Prompt) == "" {
			v.add(n.ID, "prompt", "Write the prompt")
		}
	case *AIExtractConfig:
		v.model(n, "model", c.Model)
		v.maxTokens(n, c.MaxTokens)
		if strings.TrimSpace(c.Text) == "" {
			v.add(n.ID, "text", "Say which text to read, e.g. {{ $trigger.body }}")
		}
		if msg := schemaProblem(c.Schema); msg != "" {
			v.add(n.ID, "schema", "%s", msg)
		}
	case *CallWorkflowConfig:
		if c.WorkflowID == "" {
			v.add(n.ID, "workflowId", "Choose the workflow to call")
		} else if v.c.Workflow != nil && !v.c.Workflow(c.WorkflowID) {
			v.add(n.ID, "workflowId", "The called workflow must be a published workflow of this workspace")
		}
	}
}

// binding checks a node's connection: only actions (and app triggers) take
// one, it must exist in the workspace, be for the node's app, and be
// active — the publish gate.
func (v *validator) binding(n Node, cfg any) {
	b := n.Connection
	act, isAction := cfg.(*ActionConfig)
	at, isAppTrigger := cfg.(*AppTriggerConfig)
	if b == nil || (b.ID == "" && !b.ClientProvides) {
		if isAction {
			v.add(n.ID, "connection", "Choose the connection this step uses, or let the client provide it")
		}
		if isAppTrigger {
			v.add(n.ID, "connection", "Choose the connection this trigger reads the app through")
		}
		return
	}
	if !isAction && !n.Kind.IsTrigger() {
		if _, isHTTP := cfg.(*HTTPConfig); !isHTTP {
			v.add(n.ID, "connection", "A %s does not use a connection", n.Kind.Label())
			return
		}
	}
	if b.ClientProvides {
		if b.ID != "" {
			v.add(n.ID, "connection", "Either bind a connection or let the client provide it, not both")
		}
		appKey := ""
		switch {
		case isAction:
			appKey = act.App
		case isAppTrigger:
			appKey = at.App
		}
		if appKey != "" && v.c.Apps != nil {
			if app, ok := v.c.Apps.App(appKey); ok && !app.IsOAuth() {
				v.add(n.ID, "connection", "Clients can provide only apps they sign in to (OAuth); %s uses an API key", app.Name)
			}
		}
		// The client's connection, once they connected, is checked as any
		// bound connection. Before that the node has no active connection,
		// unless the client has been sent the request for it: then the
		// version may go live and its runs wait at this node until the
		// client connects (engine: WaitClientConnection); an app trigger
		// starts polling once the client connects.
		var bound string
		var requested bool
		if v.c.ClientNode != nil {
			bound, requested = v.c.ClientNode(n.ID)
		}
		switch {
		case bound != "":
			b = &Binding{ID: bound}
		case requested:
			return
		default:
			v.inactive(n)
			return
		}
	}
	if h, isHTTP := cfg.(*HTTPConfig); isHTTP && v.c.ConnectionHost != nil {
		if target, ok := staticOrigin(h.URL); ok {
			if err := v.c.ConnectionHost(b.ID, target); err != nil {
				v.add(n.ID, "url", "%s", err.Error())
			}
		}
	}
	if v.c.Connection == nil {
		return
	}
	app, status, ok := v.c.Connection(b.ID)
	switch {
	case !ok:
		v.add(n.ID, "connection", "The chosen connection does not exist in this workspace")
	case isAction && act.App != "" && app != act.App,
		isAppTrigger && at.App != "" && app != at.App:
		v.add(n.ID, "connection", "The chosen connection is for another app")
	case status != "active":
		v.inactive(n)
	}
}

// model checks a node's model: a provider of the workspace that offers it.
func (v *validator) model(n Node, field string, m ModelRef) {
	switch {
	case m.ProviderID == "":
		v.add(n.ID, field+".providerId", "Choose the model provider")
	case strings.TrimSpace(m.Name) == "":
		v.add(n.ID, field+".name", "Choose the model")
	case v.c.Model != nil:
		offered, ok := v.c.Model(m.ProviderID, m.Name)
		if !ok {
			v.add(n.ID, field+".providerId", "The chosen model provider does not exist in this workspace")
		} else if !offered {
			v.add(n.ID, field+".name", "The provider does not offer the model %q", m.Name)
		}
	}
}

func (v *validator) maxTokens(n Node, max int) {
	if max < 0 || max > MaxModelTokens {
		v.add(n.ID, "maxTokens", "A model call answers in at most %d tokens", MaxModelTokens)
	}
}

var toolNamePattern = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]{0,63}$`)

func (v *validator) agent(n Node, c *AgentConfig) {
	if strings.TrimSpace(c.Instructions) == "" {
		v.add(n.ID, "instructions", "Tell the agent what to do")
	} else if utf8.RuneCountInString(c.Instructions) > 20000 {
		v.add(n.ID, "instructions", "Instructions hold at most 20000 characters")
	}
	switch c.Driver {
	case DriverModel:
		if c.Model == nil {
			v.add(n.ID, "model", "Choose the model that drives the agent")
		} else {
			v.model(n, "model", *c.Model)
		}
	case DriverCallback:
		if c.Model != nil {
			v.add(n.ID, "model", "An agent driven by callbacks has no model")
		}
	default:
		v.add(n.ID, "driver", "The agent's driver is %q (a model decides) or %q (an outside caller submits each decision)", DriverModel, DriverCallback)
	}
	v.maxTokens(n, c.MaxTokens)
	if c.MaxSteps < 0 || c.MaxSteps > MaxAgentSteps {
		v.add(n.ID, "maxSteps", "An agent takes 1–%d steps", MaxAgentSteps)
	}
	switch {
	case len(c.Tools) == 0:
		v.add(n.ID, "tools", "Give the agent at least one tool")
	case len(c.Tools) > MaxAgentTools:
		v.add(n.ID, "tools", "An agent has at most %d tools", MaxAgentTools)
	}
	names := map[string]bool{}
	for i, t := range c.Tools {
		field := func(name string) string { return fmt.Sprintf("tools[%d].%s", i, name) }
		switch {
		case !toolNamePattern.MatchString(t.Name):
			v.add(n.ID, field("name"), "A tool's name starts with a letter and holds only letters, digits, - and _ (at most 64)")
		case names[t.Name]:
			v.add(n.ID, field("name"), "Two tools are named %q", t.Name)
		}
		names[t.Name] = true
		if v.c.Apps != nil {
			app, ok := v.c.Apps.App(t.App)
			if !ok {
				v.add(n.ID, field("app"), "Unknown app %q", t.App)
				continue
			}
			if _, ok := app.Action(t.Action); !ok {
				v.add(n.ID, field("action"), "Choose one of %s's actions", app.Name)
				continue
			}
		}
		if t.ConnectionID == "" {
			v.add(n.ID, field("connectionId"), "Choose the connection the tool %q uses", t.Name)
			continue
		}
		if v.c.Connection == nil {
			continue
		}
		app, status, ok := v.c.Connection(t.ConnectionID)
		switch {
		case !ok:
			v.add(n.ID, field("connectionId"), "The chosen connection does not exist in this workspace")
		case app != t.App:
			v.add(n.ID, field("connectionId"), "The chosen connection is for another app")
		case status != "active":
			v.add(n.ID, field("connectionId"), MsgAgentInactiveConnection)
		}
	}
}

// schemaProblem checks an AI Extract schema: a JSON Schema object whose
// type is "object".
func schemaProblem(raw json.RawMessage) string {
	if len(raw) == 0 {
		return "Describe the JSON to extract as a JSON Schema"
	}
	var s struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return "The schema must be a JSON object (a JSON Schema)"
	}
	if s.Type != "object" {
		return `The schema describes an object: give it "type": "object" and its properties`
	}
	if _, err := CompileSchema(raw); err != nil {
		return "The schema is not a valid JSON Schema: " + err.Error()
	}
	return ""
}

func (v *validator) inactive(n Node) {
	if n.Kind.IsTrigger() {
		v.add(n.ID, "connection", MsgTriggerInactiveConnection)
		return
	}
	v.add(n.ID, "connection", MsgActionInactiveConnection)
}

// app finds the app a node names in the catalog, reporting a missing or
// unknown one; ok is false when there is nothing more to check (no
// catalog to check against included).
func (v *validator) app(n Node, key string) (catalog.App, bool) {
	if key == "" {
		v.add(n.ID, "app", "Choose the app")
		return catalog.App{}, false
	}
	if v.c.Apps == nil {
		return catalog.App{}, false
	}
	app, ok := v.c.Apps.App(key)
	if !ok {
		v.add(n.ID, "app", "Unknown app %q", key)
	}
	return app, ok
}

func (v *validator) action(n Node, c *ActionConfig) {
	app, ok := v.app(n, c.App)
	if !ok {
		return
	}
	act, ok := app.Action(c.Action)
	if !ok {
		v.add(n.ID, "action", "Choose one of %s's actions", app.Name)
		return
	}
	known := map[string]bool{}
	for _, in := range act.Inputs {
		known[in.Name] = true
		raw, given := c.Inputs[in.Name]
		empty := !given || string(raw) == `""` || string(raw) == "null"
		if in.Required && empty {
			v.add(n.ID, "inputs."+in.Name, "%s is required", in.Label)
		}
	}
	names := make([]string, 0, len(c.Inputs))
	for name := range c.Inputs {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if !known[name] {
			v.add(n.ID, "inputs."+name, "%s's %s action has no input %q", app.Name, act.Name, name)
		}
	}
}

// appTrigger checks an app trigger: a polling trigger the app's catalog
// entry declares, with its required inputs and nothing else.
func (v *validator) appTrigger(n Node, c *AppTriggerConfig) {
	if c.IntervalSeconds < 0 || c.IntervalSeconds > MaxPollIntervalSeconds {
		v.add(n.ID, "intervalSeconds", "Poll at most once a day (0 to %d seconds; 0 is every minute)", MaxPollIntervalSeconds)
	}
	app, ok := v.app(n, c.App)
	if !ok {
		return
	}
	tr, ok := app.Trigger(c.Trigger)
	if !ok {
		v.add(n.ID, "trigger", "Choose one of %s's triggers", app.Name)
		return
	}
	if v.c.AppTrigger != nil && !v.c.AppTrigger(c.App, c.Trigger) {
		if tr.Mode == catalog.TriggerPoll {
			v.add(n.ID, "trigger", "TaskJuice cannot poll %s's %s trigger yet", app.Name, tr.Name)
		} else {
			v.add(n.ID, "trigger", "%s's %s trigger is delivered by the app (instant), which TaskJuice does not receive yet", app.Name, tr.Name)
		}
		return
	}
	known := map[string]bool{}
	for _, in := range tr.Inputs {
		known[in.Name] = true
		if in.Required && strings.TrimSpace(c.Inputs[in.Name]) == "" {
			v.add(n.ID, "inputs."+in.Name, "%s is required", in.Label)
		}
	}
	names := make([]string, 0, len(c.Inputs))
	for name := range c.Inputs {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		switch {
		case !known[name]:
			v.add(n.ID, "inputs."+name, "%s's %s trigger has no input %q", app.Name, tr.Name, name)
		case strings.Contains(c.Inputs[name], "{{"):
			v.add(n.ID, "inputs."+name, "A trigger's inputs are plain values; expressions are for steps")
		}
	}
}

// staticOrigin returns the part of an HTTP step's URL that names its
// origin, when no expression is in it ("https://api.example.com/{{ $x }}"
// still has a known host); ok is false when the host is known only at run
// time, which checks it then.
func staticOrigin(raw string) (string, bool) {
	raw = strings.TrimSpace(raw)
	i := strings.Index(raw, "://")
	if i < 0 {
		return "", false
	}
	end := len(raw)
	if j := strings.IndexAny(raw[i+3:], "/?#"); j >= 0 {
		end = i + 3 + j
	}
	origin := raw[:end]
	if strings.Contains(origin, "{{") {
		return "", false
	}
	return origin, true
}

// validHeaderName is true for an HTTP header name (an RFC 9110 token).
func validHeaderName(s string) bool {
	if s == "" || len(s) > 100 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("!#$%&'*+-.^_`|~", r)) {
			return false
		}
	}
	return true
}
