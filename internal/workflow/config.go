package workflow

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
)

// The configuration of each kind, as the graph document holds it. Strings
// (and any string inside a JSON value) may carry {{ expressions }}.

// ManualConfig configures the manual trigger (nothing to set).
type ManualConfig struct{}

// ErrorTriggerConfig configures the Error trigger: nothing; the workflows
// that fail choose it as their error workflow.
type ErrorTriggerConfig struct{}

// WebhookConfig configures the webhook trigger. The shared secret of the
// bearer, header and HMAC modes is stored server-side, never in the graph.
type WebhookConfig struct {
	// Auth is none, bearer, header, hmac-sha256 or hmac-sha512.
	Auth string `json:"auth"`
	// Header names the header carrying the secret (header mode) or the
	// signature (HMAC modes; with a Stripe or Slack timestamp it defaults to
	// theirs).
	Header string `json:"header,omitempty"`
	// DeliveryHeader names a header with a unique id per delivery (as
	// X-GitHub-Delivery): a delivery received before starts nothing new.
	DeliveryHeader string `json:"deliveryHeader,omitempty"`
	// Timestamp is how an HMAC caller signs a timestamp with the body:
	// "stripe", "slack", or "header" (the Unix time in TimestampHeader);
	// empty for the body alone. A signed timestamp older than 5 minutes is
	// refused.
	Timestamp       string `json:"timestamp,omitempty"`
	TimestampHeader string `json:"timestampHeader,omitempty"`
}

// Signed-timestamp schemes of the HMAC modes.
var webhookTimestamps = map[string]bool{"": true, "stripe": true, "slack": true, "header": true}

// Webhook authentication modes.
var webhookAuthModes = map[string]bool{"none": true, "bearer": true, "header": true, "hmac-sha256": true, "hmac-sha512": true}

// ScheduleConfig configures the schedule trigger.
type ScheduleConfig struct {
	Cron     string `json:"cron"`
	Timezone string `json:"timezone,omitempty"`
}

// AppTriggerConfig starts a run for each new item of an app's trigger (one
// of the catalog's Triggers), read through the trigger node's connection.
// Inputs are plain values (no expressions: there is no run yet).
type AppTriggerConfig struct {
	App     string            `json:"app"`
	Trigger string            `json:"trigger"`
	Inputs  map[string]string `json:"inputs,omitempty"`
	// IncludeRecent starts runs for the items already there at the first
	// poll after publishing (a few of the most recent); without it that
	// poll only records where the app stands.
	IncludeRecent bool `json:"includeRecent,omitempty"`
	// IntervalSeconds is how often the app is polled; 0 is the default
	// (one minute). The poller keeps a floor.
	IntervalSeconds int `json:"intervalSeconds,omitempty"`
}

// MaxPollIntervalSeconds bounds a polling trigger's interval (one day).
const MaxPollIntervalSeconds = 86400

// ActionConfig runs an app's action through the node's connection.
type ActionConfig struct {
	App    string                     `json:"app"`
	Action string                     `json:"action"`
	Inputs map[string]json.RawMessage `json:"inputs,omitempty"`
}

// HTTPConfig is the HTTP Request node.
type HTTPConfig struct {
	Method         string            `json:"method"`
	URL            string            `json:"url"`
	Headers        map[string]string `json:"headers,omitempty"`
	Body           json.RawMessage   `json:"body,omitempty"`
	TimeoutSeconds int               `json:"timeoutSeconds,omitempty"`
	Retry          *RetryPolicy      `json:"retry,omitempty"`
}

// RetryPolicy says how a node retries a retryable failure.
type RetryPolicy struct {
	MaxAttempts    int     `json:"maxAttempts"`
	BackoffSeconds float64 `json:"backoffSeconds,omitempty"`
}

// BranchConfig takes the "true" or "false" path.
type BranchConfig struct {
	Condition string `json:"condition"`
}

// SwitchConfig takes the path of the first case whose value equals Value,
// or "default".
type SwitchConfig struct {
	Value string       `json:"value"`
	Cases []SwitchCase `json:"cases"`
}

// SwitchCase is one named case.
type SwitchCase struct {
	Name   string          `json:"name"`
	Equals json.RawMessage `json:"equals"`
}

// TransformConfig reshapes data: its output is the evaluated template.
type TransformConfig struct {
	Output json.RawMessage `json:"output"`
}

// DelayConfig waits for a duration, or until a time.
type DelayConfig struct {
	Duration string `json:"duration,omitempty"`
	Until    string `json:"until,omitempty"`
}

// ApprovalConfig waits for a member's approve or reject.
type ApprovalConfig struct {
	Message string `json:"message"`
}

// LoopConfig runs the "each" path once per item, then the "done" path.
type LoopConfig struct {
	Items    string `json:"items"`
	MaxItems int    `json:"maxItems,omitempty"`
}

// FilterConfig keeps the items (a list, usually from an expression) for
// which Condition is true. Condition is a JSONata expression written
// without {{ }}: it is evaluated against each item ($ is the item, $index
// its position).
type FilterConfig struct {
	Items     string `json:"items"`
	Condition string `json:"condition"`
}

// SortConfig orders the items by the value of By, a JSONata expression
// written without {{ }} and evaluated against each item; numbers before
// text, missing values last; Order is "asc" (the default) or "desc". The
// order of items with equal values is kept.
type SortConfig struct {
	Items string `json:"items"`
	By    string `json:"by"`
	Order string `json:"order,omitempty"`
}

// CodeConfig runs JavaScript: Source is the body of a function whose
// return value is the step's output. It sees $input, $trigger, $steps and
// $meta as expressions do, and console.log writes to the step's console.
// It has no network, file or process access. TimeoutMS bounds its time
// (default 1000, at most MaxCodeTimeoutMS); its memory is bounded too.
type CodeConfig struct {
	Source    string `json:"source"`
	TimeoutMS int    `json:"timeoutMs,omitempty"`
}

// Limits of a Code step.
const (
	DefaultCodeTimeoutMS = 1000
	MaxCodeTimeoutMS     = 10000
	MaxCodeSource        = 64 << 10
)

// RespondConfig decides the HTTP answer of the webhook delivery that
// started the run: Status (a number, or an expression giving one; 200 when
// empty), Headers and Body (JSON; strings may hold expressions). The
// caller is held up to WaitSeconds (default 10, at most 30) for it; past
// that, or when the run ends or waits without answering, it gets 202 with
// the run's id.
type RespondConfig struct {
	Status      string            `json:"status,omitempty"`
	Headers     map[string]string `json:"headers,omitempty"`
	Body        json.RawMessage   `json:"body,omitempty"`
	WaitSeconds int               `json:"waitSeconds,omitempty"`
}

// Limits of a webhook's wait for its answer.
const (
	DefaultRespondWaitSeconds = 10
	MaxRespondWaitSeconds     = 30
)

// Wait is how long the caller is held for this answer.
func (c RespondConfig) Wait() int {
	if c.WaitSeconds <= 0 {
		return DefaultRespondWaitSeconds
	}
	return min(c.WaitSeconds, MaxRespondWaitSeconds)
}

// ParallelConfig starts several arms from one step: every step its edges
// lead to. In the editor, Arms is how many of the steps listed after it
// are its arms (default 2) and Steps how many steps each arm has (one
// each when not given); the step after the last arm is where they join.
type ParallelConfig struct {
	Arms  int   `json:"arms,omitempty"`
	Steps []int `json:"steps,omitempty"`
}

// Limits of a Parallel step.
const (
	DefaultParallelArms = 2
	MaxParallelArms     = 10
)

// ArmCount is how many arms the editor lays out.
func (c ParallelConfig) ArmCount() int {
	if len(c.Steps) > 0 {
		return min(len(c.Steps), MaxParallelArms)
	}
	if c.Arms <= 0 {
		return DefaultParallelArms
	}
	return min(c.Arms, MaxParallelArms)
}

// ArmSteps is how many steps each arm has in the editor.
func (c ParallelConfig) ArmSteps() []int {
	out := make([]int, c.ArmCount())
	for i := range out {
		out[i] = 1
		if i < len(c.Steps) && c.Steps[i] > 0 {
			out[i] = min(c.Steps[i], MaxNodes)
		}
	}
	return out
}

// MergeConfig joins the arms that lead into it (it runs once every one
// has arrived) and combines their outputs: "append" (the default) lists
// every arm's items one arm after another, "position" merges the arms'
// i-th items into one, "key" merges the items that share the value of
// Key. An arm's items are its output when that is a list, its "items" when
// it has them (Filter, Sort), else the output itself as one item.
type MergeConfig struct {
	Mode string `json:"mode,omitempty"`
	Key  string `json:"key,omitempty"`
}

// StopErrorConfig fails the run with a chosen error code and message.
type StopErrorConfig struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// CallWorkflowConfig runs another published workflow and waits for it.
type CallWorkflowConfig struct {
	WorkflowID string          `json:"workflowId"`
	Input      json.RawMessage `json:"input,omitempty"`
}

// AgentConfig is an agent's loop: at each turn its driver decides the next
// tool call or gives the final answer. With the "model" driver a model of
// one of the workspace's providers decides; with the "callback" driver an
// outside caller submits each decision through the API.
type AgentConfig struct {
	Instructions string      `json:"instructions"`
	Driver       string      `json:"driver"`
	Model        *ModelRef   `json:"model,omitempty"`
	Tools        []AgentTool `json:"tools"`
	// MaxSteps bounds the turns (decisions) of one run.
	MaxSteps int `json:"maxSteps,omitempty"`
	// MaxTokens bounds each model call's answer.
	MaxTokens int `json:"maxTokens,omitempty"`
}

// ModelRef names a model of one of the workspace's model providers.
type ModelRef struct {
	ProviderID string `json:"providerId"`
	Name       string `json:"name"`
}

// AIGenerateConfig turns a prompt into text with a model.
type AIGenerateConfig struct {
	Model     ModelRef `json:"model"`
	System    string   `json:"system,omitempty"`
	Prompt    string   `json:"prompt"`
	MaxTokens int      `json:"maxTokens,omitempty"`
}

// AIExtractConfig reads text into JSON that must match a JSON Schema.
type AIExtractConfig struct {
	Model        ModelRef        `json:"model"`
	Instructions string          `json:"instructions,omitempty"`
	Text         string          `json:"text"`
	Schema       json.RawMessage `json:"schema"`
	MaxTokens    int             `json:"maxTokens,omitempty"`
}

// MaxModelTokens bounds the answer of one model call a step may ask for.
const MaxModelTokens = 32000

// AgentTool is an app action the agent may call, through a connection.
type AgentTool struct {
	Name         string `json:"name"`
	Description  string `json:"description,omitempty"`
	App          string `json:"app"`
	Action       string `json:"action"`
	ConnectionID string `json:"connectionId"`
}

// Agent drivers.
const (
	DriverModel    = "model"
	DriverCallback = "callback"
)

// Limits of an agent.
const (
	MaxAgentSteps     = 50
	DefaultAgentSteps = 10
	MaxAgentTools     = 32
)

// Steps is the agent's turn limit.
func (c AgentConfig) Steps() int {
	if c.MaxSteps <= 0 {
		return DefaultAgentSteps
	}
	return min(c.MaxSteps, MaxAgentSteps)
}

// Tool finds a tool by name.
func (c AgentConfig) Tool(name string) (AgentTool, bool) {
	for _, t := range c.Tools {
		if t.Name == name {
			return t, true
		}
	}
	return AgentTool{}, false
}

// configFor returns a pointer to the zero config of a kind.
func configFor(k Kind) any {
	switch k {
	case TriggerManual:
		return &ManualConfig{}
	case TriggerError:
		return &ErrorTriggerConfig{}
	case TriggerWebhook:
		return &WebhookConfig{}
	case TriggerSchedule:
		return &ScheduleConfig{}
	case TriggerApp:
		return &AppTriggerConfig{}
	case NodeAction:
		return &ActionConfig{}
	case NodeHTTP:
		return &HTTPConfig{}
	case NodeBranch:
		return &BranchConfig{}
	case NodeSwitch:
		return &SwitchConfig{}
	case NodeTransform:
		return &TransformConfig{}
	case NodeDelay:
		return &DelayConfig{}
	case NodeApproval:
		return &ApprovalConfig{}
	case NodeLoop:
		return &LoopConfig{}
	case NodeCallWorkflow:
		return &CallWorkflowConfig{}
	case NodeAgent:
		return &AgentConfig{}
	case NodeAIGenerate:
		return &AIGenerateConfig{}
	case NodeAIExtract:
		return &AIExtractConfig{}
	case NodeFilter:
		return &FilterConfig{}
	case NodeSort:
		return &SortConfig{}
	case NodeCode:
		return &CodeConfig{}
	case NodeStopError:
		return &StopErrorConfig{}
	case NodeRespond:
		return &RespondConfig{}
	case NodeParallel:
		return &ParallelConfig{}
	case NodeMerge:
		return &MergeConfig{}
	}
	return nil
}

// DecodeConfig reads a node's config into its kind's type, strictly.
func DecodeConfig(n Node) (any, error) {
	v := configFor(n.Kind)
	if v == nil {
		return nil, errors.New("unknown kind")
	}
	raw := n.Config
	if len(bytes.TrimSpace(raw)) == 0 || string(bytes.TrimSpace(raw)) == "null" {
		raw = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("config must be a single JSON object")
	}
	return v, nil
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }
