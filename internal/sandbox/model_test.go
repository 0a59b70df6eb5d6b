package sandbox_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"taskjuice/internal/sandbox"
)

// completion is a chat completion as a plain JSON client reads it.
type completion struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	Model   string `json:"model"`
	Choices []struct {
		Index   int `json:"index"`
		Message struct {
			Role      string     `json:"role"`
			Content   *string    `json:"content"`
			ToolCalls []toolCall `json:"tool_calls"`
		} `json:"message"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
		TotalTokens      int `json:"total_tokens"`
	} `json:"usage"`
	Error *modelErr `json:"error"`
}

type toolCall struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

type modelErr struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

func (c completion) content() string {
	if len(c.Choices) == 0 || c.Choices[0].Message.Content == nil {
		return "<null>"
	}
	return *c.Choices[0].Message.Content
}

func (c completion) finish() string {
	if len(c.Choices) == 0 {
		return ""
	}
	return c.Choices[0].FinishReason
}

func (c completion) calls() []toolCall {
	if len(c.Choices) == 0 {
		return nil
	}
	return c.Choices[0].Message.ToolCalls
}

func (e *modelErr) code() string {
	if e == nil || e.Code == nil {
		return ""
	}
	return *e.Code
}

func (e *modelErr) param() string {
	if e == nil || e.Param == nil {
		return ""
	}
	return *e.Param
}

// complete posts a chat completion request with the sandbox's model key.
func (f *fixture) complete(t *testing.T, body string) (completion, *http.Response) {
	t.Helper()
	var c completion
	r := f.call(t, "POST", "/v1/chat/completions", f.p.ModelKey(), body, map[string]string{"Content-Type": "application/json"}, &c)
	return c, r
}

// chat builds a request body from its parts.
func chat(model string, fields ...string) string {
	return `{"model":"` + model + `"` + strings.Join(append([]string{""}, fields...), ",") + `}`
}

const postTool = `{"type":"function","function":{"name":"post_message","description":"Post a message in a Sandbox Chat channel",
	"parameters":{"type":"object","properties":{"channel":{"type":"string"},"text":{"type":"string"}},"required":["channel","text"]}}}`

const listTool = `{"type":"function","function":{"name":"list_channels","description":"List the channels","parameters":{"type":"object","properties":{}}}}`

func TestModelAuth(t *testing.T) {
	f := setup(t, func(o *sandbox.Options) { o.ModelKey = "sk-test-key" })
	if got := f.p.ModelKey(); got != "sk-test-key" {
		t.Fatalf("ModelKey: got %q, want the configured key", got)
	}
	body := chat(sandbox.ModelSmall, `"messages":[{"role":"user","content":"hi"}]`)
	tests := []struct {
		name, method, path, key string
		want                    int
	}{
		{"no key", "POST", "/v1/chat/completions", "", 401},
		{"wrong key", "POST", "/v1/chat/completions", "sk-wrong", 401},
		{"right key", "POST", "/v1/chat/completions", "sk-test-key", 200},
		{"list without key", "GET", "/v1/models", "", 401},
		{"list with key", "GET", "/v1/models", "sk-test-key", 200},
		{"an access token is not a model key", "GET", "/v1/models", f.connect(t, f.cfg, "").AccessToken, 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out completion
			b := ""
			if tt.method == "POST" {
				b = body
			}
			r := f.call(t, tt.method, tt.path, tt.key, b, nil, &out)
			if r.StatusCode != tt.want {
				t.Fatalf("got %d, want %d", r.StatusCode, tt.want)
			}
			if tt.want == 401 && (out.Error.code() != "invalid_api_key" || out.Error.Type != "invalid_request_error" || out.Error.Message == "") {
				t.Errorf("error: got %+v, want invalid_api_key in OpenAI's shape", out.Error)
			}
		})
	}
	st := f.p.Stats().Model
	if st.Requests != 1 || st.Unauthorized != 4 || st.Completions != 1 {
		t.Errorf("stats: got %+v, want 1 request, 4 unauthorized, 1 completion", st)
	}

	a, b := setup(t, nil).p.ModelKey(), setup(t, nil).p.ModelKey()
	if a == "" || a == b {
		t.Errorf("generated keys: got %q and %q, want two different non-empty keys", a, b)
	}
}

func TestModelListing(t *testing.T) {
	f := setup(t, nil)
	key := f.p.ModelKey()
	var list struct {
		Object string `json:"object"`
		Data   []struct {
			ID, Object, OwnedBy string
			Created             int64
		} `json:"data"`
	}
	if r := f.call(t, "GET", "/v1/models", key, "", nil, &list); r.StatusCode != 200 {
		t.Fatalf("list: got %d, want 200", r.StatusCode)
	}
	var ids []string
	for _, m := range list.Data {
		ids = append(ids, m.ID)
		if m.Object != "model" || m.Created == 0 {
			t.Errorf("model %s: got object %q created %d, want model and a time", m.ID, m.Object, m.Created)
		}
	}
	if list.Object != "list" || strings.Join(ids, ",") != "sandbox-small,sandbox-large" {
		t.Errorf("list: got %q %v, want a list of sandbox-small, sandbox-large", list.Object, ids)
	}
	tests := []struct {
		id   string
		want int
		code string
	}{{sandbox.ModelLarge, 200, ""}, {sandbox.ModelSmall, 200, ""}, {"gpt-4o", 404, "model_not_found"}}
	for _, tt := range tests {
		var out struct {
			ID    string    `json:"id"`
			Error *modelErr `json:"error"`
		}
		r := f.call(t, "GET", "/v1/models/"+tt.id, key, "", nil, &out)
		if r.StatusCode != tt.want || out.Error.code() != tt.code || (tt.want == 200 && out.ID != tt.id) {
			t.Errorf("GET %s: got %d %q %q, want %d %q", tt.id, r.StatusCode, out.ID, out.Error.code(), tt.want, tt.code)
		}
	}
}

func TestModelValidation(t *testing.T) {
	f := setup(t, nil)
	if err := f.p.ScriptModel(sandbox.TextReply("kept for later")); err != nil {
		t.Fatal(err)
	}
	user := `{"role":"user","content":"hi"}`
	msgs := func(m ...string) string { return `"messages":[` + strings.Join(m, ",") + `]` }
	call := `{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"post_message","arguments":"{}"}}]}`
	tools := func(t ...string) string { return `"tools":[` + strings.Join(t, ",") + `]` }
	tests := []struct {
		name, body string
		status     int
		code       string
		param      string
	}{
		{"broken JSON", `{"model":`, 400, "invalid_json", ""},
		{"not an object", `[]`, 400, "invalid_json", ""},
		{"wrong type", chat(sandbox.ModelSmall, msgs(user), `"max_tokens":"ten"`), 400, "invalid_json", ""},
		{"no model", `{` + msgs(user) + `}`, 400, "missing_required_parameter", "model"},
		{"unknown model", chat("gpt-4o", msgs(user)), 404, "model_not_found", "model"},
		{"no messages", chat(sandbox.ModelSmall), 400, "missing_required_parameter", "messages"},
		{"empty messages", chat(sandbox.ModelSmall, msgs()), 400, "invalid_value", "messages"},
		{"messages not an array", chat(sandbox.ModelSmall, `"messages":"hi"`), 400, "invalid_type", "messages"},
		{"no role", chat(sandbox.ModelSmall, msgs(`{"content":"hi"}`)), 400, "missing_required_parameter", "messages[0].role"},
		{"unknown role", chat(sandbox.ModelSmall, msgs(`{"role":"robot","content":"hi"}`)), 400, "invalid_value", "messages[0].role"},
		{"user without content", chat(sandbox.ModelSmall, msgs(`{"role":"user"}`)), 400, "missing_required_parameter", "messages[0].content"},
		{"content a number", chat(sandbox.ModelSmall, msgs(`{"role":"user","content":42}`)), 400, "invalid_type", "messages[0].content"},
		{"image part", chat(sandbox.ModelSmall, msgs(`{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}`)), 400, "invalid_type", "messages[0].content"},
		{"assistant with nothing", chat(sandbox.ModelSmall, msgs(user, `{"role":"assistant"}`)), 400, "missing_required_parameter", "messages[1].content"},
		{"tool call without id", chat(sandbox.ModelSmall, msgs(user, `{"role":"assistant","tool_calls":[{"type":"function","function":{"name":"x","arguments":"{}"}}]}`)), 400, "missing_required_parameter", "messages[1].tool_calls[0].id"},
		{"tool call of another type", chat(sandbox.ModelSmall, msgs(user, `{"role":"assistant","tool_calls":[{"id":"c1","type":"code","function":{"name":"x"}}]}`)), 400, "invalid_value", "messages[1].tool_calls[0].type"},
		{"tool_calls on a user message", chat(sandbox.ModelSmall, msgs(`{"role":"user","content":"hi","tool_calls":[]}`, `{"role":"user","content":"hi","tool_calls":[{"id":"c1"}]}`)), 400, "invalid_value", "messages[1].tool_calls"},
		{"tool result without a call", chat(sandbox.ModelSmall, msgs(user, `{"role":"tool","tool_call_id":"c1","content":"ok"}`)), 400, "invalid_value", "messages[1].tool_call_id"},
		{"tool result without id", chat(sandbox.ModelSmall, msgs(user, call, `{"role":"tool","content":"ok"}`)), 400, "missing_required_parameter", "messages[2].tool_call_id"},
		{"tool result answered twice", chat(sandbox.ModelSmall, msgs(user, call, `{"role":"tool","tool_call_id":"c1","content":"ok"}`, `{"role":"tool","tool_call_id":"c1","content":"ok"}`)), 400, "invalid_value", "messages[3].tool_call_id"},
		{"call left unanswered before a user message", chat(sandbox.ModelSmall, msgs(user, call, user)), 400, "invalid_value", "messages[2].role"},
		{"call left unanswered at the end", chat(sandbox.ModelSmall, msgs(user, call)), 400, "invalid_value", "messages"},
		{"tools not an array", chat(sandbox.ModelSmall, msgs(user), `"tools":{}`), 400, "invalid_type", "tools"},
		{"empty tools", chat(sandbox.ModelSmall, msgs(user), tools()), 400, "invalid_value", "tools"},
		{"tool of another type", chat(sandbox.ModelSmall, msgs(user), tools(`{"type":"retrieval"}`)), 400, "invalid_value", "tools[0].type"},
		{"tool without function", chat(sandbox.ModelSmall, msgs(user), tools(`{"type":"function"}`)), 400, "missing_required_parameter", "tools[0].function"},
		{"bad tool name", chat(sandbox.ModelSmall, msgs(user), tools(`{"type":"function","function":{"name":"post message"}}`)), 400, "invalid_value", "tools[0].function.name"},
		{"same tool twice", chat(sandbox.ModelSmall, msgs(user), tools(postTool, postTool)), 400, "invalid_value", "tools[1].function.name"},
		{"parameters not an object", chat(sandbox.ModelSmall, msgs(user), tools(`{"type":"function","function":{"name":"x","parameters":[1]}}`)), 400, "invalid_type", "tools[0].function.parameters"},
		{"tool_choice without tools", chat(sandbox.ModelSmall, msgs(user), `"tool_choice":"auto"`), 400, "invalid_value", "tool_choice"},
		{"unknown tool_choice", chat(sandbox.ModelSmall, msgs(user), tools(postTool), `"tool_choice":"always"`), 400, "invalid_value", "tool_choice"},
		{"tool_choice names a missing tool", chat(sandbox.ModelSmall, msgs(user), tools(postTool), `"tool_choice":{"type":"function","function":{"name":"delete_all"}}`), 400, "invalid_value", "tool_choice"},
		{"max_tokens zero", chat(sandbox.ModelSmall, msgs(user), `"max_tokens":0`), 400, "invalid_value", "max_tokens"},
		{"max_tokens above the model's", chat(sandbox.ModelSmall, msgs(user), `"max_tokens":5000`), 400, "invalid_value", "max_tokens"},
		{"max_completion_tokens negative", chat(sandbox.ModelLarge, msgs(user), `"max_completion_tokens":-1`), 400, "invalid_value", "max_completion_tokens"},
		{"unknown response_format", chat(sandbox.ModelSmall, msgs(user), `"response_format":{"type":"yaml"}`), 400, "invalid_value", "response_format.type"},
		{"json_schema without name", chat(sandbox.ModelSmall, msgs(user), `"response_format":{"type":"json_schema","json_schema":{"schema":{}}}`), 400, "invalid_value", "response_format.json_schema.name"},
		{"json_schema schema not an object", chat(sandbox.ModelSmall, msgs(user), `"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":"y"}}`), 400, "invalid_type", "response_format.json_schema.schema"},
		{"stream", chat(sandbox.ModelSmall, msgs(user), `"stream":true`), 400, "unsupported_value", "stream"},
		{"n above 1", chat(sandbox.ModelSmall, msgs(user), `"n":2`), 400, "unsupported_value", "n"},
		{"over the context window", chat(sandbox.ModelSmall, msgs(`{"role":"user","content":"`+strings.Repeat("a", 70000)+`"}`)), 400, "context_length_exceeded", "messages"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, r := f.complete(t, tt.body)
			if r.StatusCode != tt.status || c.Error.code() != tt.code || c.Error.param() != tt.param {
				t.Fatalf("got %d %q param %q (%v), want %d %q param %q", r.StatusCode, c.Error.code(), c.Error.param(), c.Error, tt.status, tt.code, tt.param)
			}
			if c.Error.Type != "invalid_request_error" || c.Error.Message == "" {
				t.Errorf("got type %q message %q, want invalid_request_error with a message", c.Error.Type, c.Error.Message)
			}
		})
	}
	st := f.p.Stats().Model
	if st.Requests != len(tests) || st.Rejected != len(tests) || st.Completions != 0 || st.ScriptPending != 1 {
		t.Errorf("stats: got %+v, want %d requests all rejected, no completion, the script untouched", st, len(tests))
	}
	// A request the sandbox cannot use is refused; one that adds what it
	// ignores is not.
	c, r := f.complete(t, chat(sandbox.ModelLarge, `"messages":[{"role":"developer","content":[{"type":"text","text":"be brief"}]},`+user+`]`, `"temperature":0.2`, `"user":"u1"`, `"n":1`, `"stream":false`, `"max_tokens":null`))
	if r.StatusCode != 200 || c.content() != "kept for later" {
		t.Errorf("valid request: got %d %q, want 200 with the scripted reply", r.StatusCode, c.content())
	}
}

func TestModelScripted(t *testing.T) {
	f := setup(t, nil)
	if err := f.p.ScriptModel(
		sandbox.ToolCallReply("post_message", `{"channel":"general","text":"Deploy done"}`),
		sandbox.TextReply("Posted it."),
		sandbox.ModelReply{Content: "Trying both.", ToolCalls: []sandbox.ModelToolCall{{ID: "call_fixed", Name: "no_such_tool", Arguments: `{"broken":`}}},
	); err != nil {
		t.Fatal(err)
	}
	user := `{"role":"user","content":"Say hello"}`
	c, r := f.complete(t, chat(sandbox.ModelSmall, `"messages":[`+user+`]`, `"tools":[`+postTool+`]`))
	calls := c.calls()
	if r.StatusCode != 200 || c.finish() != "tool_calls" || c.content() != "<null>" || len(calls) != 1 {
		t.Fatalf("first: got %d %q content %q calls %+v, want one tool call and null content", r.StatusCode, c.finish(), c.content(), calls)
	}
	if calls[0].ID == "" || calls[0].Type != "function" || calls[0].Function.Name != "post_message" || calls[0].Function.Arguments != `{"channel":"general","text":"Deploy done"}` {
		t.Errorf("first: got call %+v, want post_message with the scripted arguments", calls[0])
	}
	if c.Object != "chat.completion" || c.Model != sandbox.ModelSmall || !strings.HasPrefix(c.ID, "chatcmpl-") || c.Created == 0 || c.Choices[0].Message.Role != "assistant" {
		t.Errorf("first: got %+v, want a chat.completion of sandbox-small by the assistant", c)
	}

	// The agent sends the call back with its result.
	assistant, _ := json.Marshal(map[string]any{"role": "assistant", "content": nil, "tool_calls": calls})
	result := fmt.Sprintf(`{"role":"tool","tool_call_id":%q,"content":"{\"ok\":true}"}`, calls[0].ID)
	c, _ = f.complete(t, chat(sandbox.ModelSmall, `"messages":[`+user+`,`+string(assistant)+`,`+result+`]`, `"tools":[`+postTool+`]`))
	if c.content() != "Posted it." || c.finish() != "stop" || len(c.calls()) != 0 {
		t.Errorf("second: got %q %q %+v, want the scripted text", c.content(), c.finish(), c.calls())
	}

	// A script is served as written, unknown tool and broken JSON included.
	c, _ = f.complete(t, chat(sandbox.ModelSmall, `"messages":[`+user+`]`))
	if calls := c.calls(); c.content() != "Trying both." || len(calls) != 1 || calls[0].ID != "call_fixed" || calls[0].Function.Name != "no_such_tool" || calls[0].Function.Arguments != `{"broken":` {
		t.Errorf("third: got %q %+v, want the script verbatim", c.content(), c.calls())
	}
	// With the script spent, the default policy answers.
	c, _ = f.complete(t, chat(sandbox.ModelSmall, `"messages":[`+user+`]`))
	if !strings.HasPrefix(c.content(), "This is sandbox-small") {
		t.Errorf("fourth: got %q, want the default answer", c.content())
	}
	st := f.p.Stats().Model
	if st.Completions != 4 || st.Scripted != 3 || st.ScriptPending != 0 {
		t.Errorf("stats: got %+v, want 4 completions, 3 scripted, none pending", st)
	}

	for _, bad := range []sandbox.ModelReply{{}, {ToolCalls: []sandbox.ModelToolCall{{Arguments: "{}"}}}} {
		if err := f.p.ScriptModel(sandbox.TextReply("fine"), bad); err == nil {
			t.Errorf("ScriptModel(%+v): got nil, want an error", bad)
		}
	}
	if n := f.p.Stats().Model.ScriptPending; n != 0 {
		t.Errorf("after a refused script: got %d pending, want 0 (all or nothing)", n)
	}
	_ = f.p.ScriptModel(sandbox.TextReply("a"), sandbox.TextReply("b"))
	if n := f.p.ClearModelScript(); n != 2 {
		t.Errorf("ClearModelScript: got %d, want 2", n)
	}
}

func TestModelDefaultPolicy(t *testing.T) {
	f := setup(t, nil)
	const (
		typedTool = `{"type":"function","function":{"name":"notify_team","description":"Notify the team",
			"parameters":{"type":"object","properties":{"channel_id":{"type":"string"},"text":{"type":"string","maxLength":10},
			"urgent":{"type":"boolean"},"count":{"type":"integer","minimum":2},"cc":{"type":"string"}},"required":["channel_id","text","urgent","count"]}}}`
		bareTool   = `{"type":"function","function":{"name":"send"}}`
		byDescTool = `{"type":"function","function":{"name":"slack_write","description":"Send a message to a channel","parameters":{"type":"object","properties":{"room":{"type":"string","enum":["general","ops"]},"body":{"type":"string"}},"required":["room","body"]}}}`
	)
	user := func(s string) string { return fmt.Sprintf(`{"role":"user","content":%q}`, s) }
	tests := []struct {
		name     string
		messages []string
		extra    []string
		wantCall string // name(arguments), or "" for a text answer
		wantText string // prefix of the text answer
	}{
		{"asked to post, quoted text and a channel", []string{user(`Post "Deploy finished" in #random please`)}, []string{`"tools":[` + listTool + `,` + postTool + `]`},
			`post_message({"channel":"random","text":"Deploy finished"})`, ""},
		{"text after a colon", []string{user("Tell the team: the build is green")}, []string{`"tools":[` + postTool + `]`},
			`post_message({"channel":"general","text":"the build is green"})`, ""},
		{"let them know", []string{user("let everyone know we ship friday")}, []string{`"tools":[` + postTool + `]`},
			`post_message({"channel":"general","text":"let everyone know we ship friday"})`, ""},
		{"tool found by its description", []string{user("Send 'hi' to #ops")}, []string{`"tools":[` + listTool + `,` + byDescTool + `]`},
			`slack_write({"body":"Send 'hi' to #ops","room":"ops"})`, ""},
		{"schema types and limits", []string{user(`Notify: "Server is down again"`)}, []string{`"tools":[` + typedTool + `]`},
			`notify_team({"channel_id":"general","count":2,"text":"Server is ","urgent":false})`, ""},
		{"tool without parameters gets channel and text", []string{user("send: hello")}, []string{`"tools":[` + bareTool + `]`},
			`send({"channel":"general","text":"hello"})`, ""},
		{"the instructions ask to post: any message is posted, a JSON object by its fields", []string{
			`{"role":"system","content":"When a lead comes in, post it to the #sales channel."}`,
			user("Input:\n{\"name\":\"Ada Lovelace\",\"company\":\"Analytical Engines\",\"score\":42}")}, []string{`"tools":[` + postTool + `]`},
			`post_message({"channel":"sales","text":"name: Ada Lovelace; company: Analytical Engines; score: 42"})`, ""},
		{"a lone JSON field is posted as its value", []string{`{"role":"developer","content":"Share every message."}`,
			user(`{"message":"Ada wants a demo"}`)}, []string{`"tools":[` + postTool + `]`},
			`post_message({"channel":"general","text":"Ada wants a demo"})`, ""},
		{"instructions that do not ask to post", []string{`{"role":"system","content":"You are helpful."}`, user("What is the weather like?")},
			[]string{`"tools":[` + postTool + `]`}, "", `This is sandbox-small`},
		{"the instructions ask to post, after the tool result", []string{`{"role":"system","content":"Post every lead."}`, user(`{"name":"Ada"}`),
			`{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"post_message","arguments":"{}"}}]}`,
			`{"role":"tool","tool_call_id":"c1","content":"ok"}`}, []string{`"tools":[` + postTool + `]`},
			"", `Done. post_message returned ok.`},
		{"not asked to post", []string{user("What is the weather like?")}, []string{`"tools":[` + postTool + `]`},
			"", `This is sandbox-small, the sandbox's scripted model. You said: "What is the weather like?"`},
		{"no tool fits", []string{user("Post this please")}, []string{`"tools":[` + listTool + `]`}, "", "This is sandbox-small"},
		{"no tools", []string{user("Post this please")}, nil, "", "This is sandbox-small"},
		{"tool_choice none", []string{user("Post this please")}, []string{`"tools":[` + postTool + `]`, `"tool_choice":"none"`}, "", "This is sandbox-small"},
		{"tool_choice required", []string{user("What is the weather like?")}, []string{`"tools":[` + listTool + `,` + postTool + `]`, `"tool_choice":"required"`},
			`post_message({"channel":"general","text":"What is the weather like?"})`, ""},
		{"tool_choice names a tool", []string{user("Post this please")}, []string{`"tools":[` + postTool + `,` + listTool + `]`, `"tool_choice":{"type":"function","function":{"name":"list_channels"}}`},
			`list_channels({})`, ""},
		{"after the tool result", []string{user("Post hi"),
			`{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"post_message","arguments":"{}"}}]}`,
			`{"role":"tool","tool_call_id":"c1","content":"{\"message\":{\"id\":\"M1\"}}"}`}, []string{`"tools":[` + postTool + `]`},
			"", `Done. post_message returned {"message":{"id":"M1"}}.`},
		{"a new question after an earlier tool result", []string{user("Post hi"),
			`{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"post_message","arguments":"{}"}}]}`,
			`{"role":"tool","tool_call_id":"c1","content":"ok"}`, `{"role":"assistant","content":"Done."}`, user(`Now post "bye"`)}, []string{`"tools":[` + postTool + `]`},
			`post_message({"channel":"general","text":"bye"})`, ""},
		{"json_object", []string{user("Summarise")}, []string{`"response_format":{"type":"json_object"}`},
			"", `{"answer":"This is sandbox-small, the sandbox's scripted model. You said: \"Summarise\""}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := chat(sandbox.ModelSmall, append([]string{`"messages":[` + strings.Join(tt.messages, ",") + `]`}, tt.extra...)...)
			var first completion
			for i := range 2 { // the same request twice: the same answer
				c, r := f.complete(t, body)
				if r.StatusCode != 200 {
					t.Fatalf("got %d %+v, want 200", r.StatusCode, c.Error)
				}
				got := ""
				if calls := c.calls(); len(calls) > 0 {
					got = calls[0].Function.Name + "(" + calls[0].Function.Arguments + ")"
				}
				if got != tt.wantCall {
					t.Fatalf("call: got %s, want %s", got, tt.wantCall)
				}
				if tt.wantCall != "" && (c.finish() != "tool_calls" || c.content() != "<null>") {
					t.Errorf("got finish %q content %q, want tool_calls and null", c.finish(), c.content())
				}
				if tt.wantCall == "" && (!strings.HasPrefix(c.content(), tt.wantText) || c.finish() != "stop") {
					t.Errorf("text: got %q %q, want %q... and stop", c.content(), c.finish(), tt.wantText)
				}
				if i == 0 {
					first = c
				} else if c.content() != first.content() || c.Usage != first.Usage {
					t.Errorf("second time: got %q %+v, want %q %+v", c.content(), c.Usage, first.content(), first.Usage)
				}
			}
		})
	}
}

func TestModelJSONSchema(t *testing.T) {
	f := setup(t, nil)
	schema := `{"type":"object","additionalProperties":false,
		"properties":{
			"name":{"type":"string","minLength":10},
			"summary":{"type":"string"},
			"age":{"type":"integer","minimum":18},
			"score":{"type":["number","null"]},
			"active":{"type":"boolean"},
			"kind":{"type":"string","enum":["lead","client"]},
			"email":{"type":"string","format":"email"},
			"tags":{"type":"array","items":{"type":"string"},"minItems":2},
			"address":{"type":"object","properties":{"city":{"type":"string"},"zip":{"type":"string","maxLength":5}},"required":["city","zip"]},
			"items":{"type":"array","items":{"$ref":"#/$defs/item"}},
			"contact":{"anyOf":[{"type":"null"},{"type":"object","properties":{"phone":{"type":"string"}}}]},
			"nickname":{"type":"string"}
		},
		"required":["name","summary","age","score","active","kind","email","tags","address","items","contact"],
		"$defs":{"item":{"type":"object","properties":{"qty":{"type":"number","exclusiveMinimum":0}},"required":["qty"]}}}`
	body := chat(sandbox.ModelLarge, `"messages":[{"role":"user","content":"Describe the lead"}]`,
		`"response_format":{"type":"json_schema","json_schema":{"name":"lead","strict":true,"schema":`+schema+`}}`)
	c, r := f.complete(t, body)
	if r.StatusCode != 200 || c.finish() != "stop" {
		t.Fatalf("got %d %q %+v, want 200 stop", r.StatusCode, c.finish(), c.Error)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(c.content()), &got); err != nil {
		t.Fatalf("content %q is not a JSON object: %v", c.content(), err)
	}
	want := `{"active":false,"address":{"city":"example","zip":"examp"},"age":18,"contact":{"phone":"example"},` +
		`"email":"someone@example.com","items":[{"qty":1}],"kind":"lead","name":"examplexxx","score":0,` +
		`"summary":"This is sandbox-large, the sandbox's scripted model. You said: \"Describe the lead\"","tags":["example","example"]}`
	if c.content() != want {
		t.Errorf("content:\n got %s\nwant %s", c.content(), want)
	}
	if _, ok := got["nickname"]; ok {
		t.Error("an optional property was filled in; want only the required ones")
	}

	// Recursive or greedy schemas get a bounded answer.
	for _, greedy := range []string{
		`{"$ref":"#/$defs/node","$defs":{"node":{"type":"object","properties":{"kids":{"type":"array","minItems":1000000,"items":{"$ref":"#/$defs/node"}}},"required":["kids"]}}}`,
		`{"type":"object","properties":{"s":{"type":"string","minLength":1e12},"a":{"type":"array","minItems":-3}},"required":["s","a"]}`,
	} {
		c, r := f.complete(t, chat(sandbox.ModelLarge, `"messages":[{"role":"user","content":"x"}]`, `"response_format":{"type":"json_schema","json_schema":{"name":"greedy","schema":`+greedy+`}}`))
		if r.StatusCode != 200 || !json.Valid([]byte(c.content())) || len(c.content()) > 64<<10 {
			t.Errorf("greedy schema %s: got %d, %d bytes, want 200 with a small JSON value", greedy, r.StatusCode, len(c.content()))
		}
	}

	// No schema is an empty object.
	c, _ = f.complete(t, chat(sandbox.ModelSmall, `"messages":[{"role":"user","content":"x"}]`, `"response_format":{"type":"json_schema","json_schema":{"name":"empty"}}`))
	if c.content() != "{}" {
		t.Errorf("no schema: got %q, want {}", c.content())
	}
}

func TestModelMaxTokens(t *testing.T) {
	f := setup(t, nil)
	msgs := `"messages":[{"role":"user","content":"hi"}]`
	// The sandbox counts one token per four characters of the compacted
	// messages (and tools), rounded up.
	promptTokens := (len(`[{"role":"user","content":"hi"}]`) + 3) / 4
	long := strings.Repeat("abcd", 50) // 200 characters: 50 tokens
	longArgs := `{"text":"` + strings.Repeat("x", 100) + `"}`
	tests := []struct {
		name       string
		reply      sandbox.ModelReply
		limit      string
		wantFinish string
		wantTokens int
		wantText   string // content, or name(arguments) of the call
	}{
		{"fits", sandbox.TextReply(long), "", "stop", 50, long},
		{"max_tokens cuts", sandbox.TextReply(long), `"max_tokens":10`, "length", 10, long[:40]},
		{"max_completion_tokens cuts", sandbox.TextReply(long), `"max_completion_tokens":5`, "length", 5, long[:20]},
		{"the smaller limit wins", sandbox.TextReply(long), `"max_tokens":7,"max_completion_tokens":30`, "length", 7, long[:28]},
		{"exactly at the limit", sandbox.TextReply(long), `"max_tokens":50`, "stop", 50, long},
		{"multi-byte text cut on a character", sandbox.TextReply(strings.Repeat("é", 12)), `"max_tokens":2`, "length", 2, strings.Repeat("é", 8)},
		{"tool call fits", sandbox.ToolCallReply("post_message", longArgs), "", "tool_calls", 31, "post_message(" + longArgs + ")"},
		{"tool call arguments cut", sandbox.ToolCallReply("post_message", longArgs), `"max_tokens":5`, "length", 5, "post_message(" + longArgs[:8] + ")"},
		{"one token", sandbox.TextReply("ok"), "", "stop", 1, "ok"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := f.p.ScriptModel(tt.reply); err != nil {
				t.Fatal(err)
			}
			fields := []string{msgs}
			if tt.limit != "" {
				fields = append(fields, tt.limit)
			}
			c, r := f.complete(t, chat(sandbox.ModelSmall, fields...))
			if r.StatusCode != 200 {
				t.Fatalf("got %d %+v, want 200", r.StatusCode, c.Error)
			}
			got := c.content()
			if calls := c.calls(); len(calls) > 0 {
				got = calls[0].Function.Name + "(" + calls[0].Function.Arguments + ")"
			}
			if c.finish() != tt.wantFinish || c.Usage.CompletionTokens != tt.wantTokens || got != tt.wantText {
				t.Errorf("got %q, %d tokens, %q; want %q, %d tokens, %q", c.finish(), c.Usage.CompletionTokens, got, tt.wantFinish, tt.wantTokens, tt.wantText)
			}
			if c.Usage.PromptTokens != promptTokens || c.Usage.TotalTokens != promptTokens+c.Usage.CompletionTokens {
				t.Errorf("usage: got %+v, want %d prompt tokens and the right total", c.Usage, promptTokens)
			}
		})
	}

	// Formatting does not change the count; tools add to it.
	c, _ := f.complete(t, `{ "model" : "sandbox-small", "messages" : [ { "role" : "user", "content" : "hi" } ] }`)
	if c.Usage.PromptTokens != promptTokens {
		t.Errorf("spaced-out JSON: got %d prompt tokens, want %d", c.Usage.PromptTokens, promptTokens)
	}
	var tools bytes.Buffer
	_ = json.Compact(&tools, []byte(`[`+postTool+`]`))
	c, _ = f.complete(t, chat(sandbox.ModelSmall, msgs, `"tools":[`+postTool+`]`, `"tool_choice":"none"`))
	if want := (len(`[{"role":"user","content":"hi"}]`) + tools.Len() + 3) / 4; c.Usage.PromptTokens != want {
		t.Errorf("with tools: got %d prompt tokens, want %d", c.Usage.PromptTokens, want)
	}
}

func TestModelCounters(t *testing.T) {
	f := setup(t, nil)
	ok := chat(sandbox.ModelSmall, `"messages":[{"role":"user","content":"Hello there, model"}]`)
	var prompt, completionTokens int
	for range 3 {
		c, r := f.complete(t, ok)
		if r.StatusCode != 200 {
			t.Fatalf("got %d, want 200", r.StatusCode)
		}
		prompt += c.Usage.PromptTokens
		completionTokens += c.Usage.CompletionTokens
	}
	f.complete(t, chat("nope", `"messages":[{"role":"user","content":"x"}]`))
	f.call(t, "POST", "/v1/chat/completions", "wrong", ok, nil, nil)

	want := sandbox.ModelStats{Requests: 4, Completions: 3, PromptTokens: prompt, CompletionTokens: completionTokens, Rejected: 1, Unauthorized: 1}
	if got := f.p.Stats().Model; got != want {
		t.Errorf("Stats().Model: got %+v, want %+v", got, want)
	}
	ac, _ := sandbox.NewAdminClient(f.base, adminToken, nil)
	st, err := ac.Stats(t.Context())
	if err != nil || st.Model != want {
		t.Errorf("admin stats: got %+v, %v, want %+v", st.Model, err, want)
	}
	if prompt == 0 || completionTokens == 0 {
		t.Errorf("got %d prompt and %d completion tokens, want both counted", prompt, completionTokens)
	}
}

func TestModelFaults(t *testing.T) {
	ok := chat(sandbox.ModelSmall, `"messages":[{"role":"user","content":"hi"}]`)
	tests := []struct {
		name       string
		kind       sandbox.FaultKind
		retryAfter time.Duration
		status     int
		code       string
		header     string
	}{
		{"500", sandbox.Fault500, 0, 500, "server_error", ""},
		{"429", sandbox.Fault429, 1500 * time.Millisecond, 429, "rate_limit_exceeded", "2"},
		{"429 without a delay", sandbox.Fault429, 0, 429, "rate_limit_exceeded", "1"},
		{"timeout", sandbox.FaultTimeout, 0, 504, "timeout", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := setup(t, func(o *sandbox.Options) { o.TimeoutHold = 50 * time.Millisecond })
			_ = f.p.ScriptModel(sandbox.TextReply("after the faults"))
			if err := f.p.FailModelNext(2, tt.kind, tt.retryAfter); err != nil {
				t.Fatal(err)
			}
			for i := range 2 {
				c, r := f.complete(t, ok)
				if r.StatusCode != tt.status || c.Error.code() != tt.code || r.Header.Get("Retry-After") != tt.header {
					t.Fatalf("attempt %d: got %d %q Retry-After %q, want %d %q %q", i+1, r.StatusCode, c.Error.code(), r.Header.Get("Retry-After"), tt.status, tt.code, tt.header)
				}
			}
			if c, r := f.complete(t, ok); r.StatusCode != 200 || c.content() != "after the faults" {
				t.Errorf("attempt 3: got %d %q, want 200 with the script untouched by the faults", r.StatusCode, c.content())
			}
			st := f.p.Stats()
			if st.Model.Requests != 3 || st.Model.FailuresInjected != 2 || st.Model.FailuresPending != 0 || st.Model.Completions != 1 || st.FailuresInjected != 0 {
				t.Errorf("stats: got %+v, want 3 requests, 2 model failures injected, 1 completion, no token failure", st)
			}
		})
	}

	f := setup(t, nil)
	if err := f.p.FailModelNext(1, "teapot", 0); err == nil {
		t.Error("unknown kind: got nil, want an error")
	}
	_ = f.p.FailModelNext(5, sandbox.Fault500, 0)
	if err := f.p.FailModelNext(0, "", 0); err != nil || f.p.Stats().Model.FailuresPending != 0 {
		t.Errorf("clear: got %v and %d pending, want nil and 0", err, f.p.Stats().Model.FailuresPending)
	}
	// A token-endpoint fault leaves the model alone.
	_ = f.p.FailNext(1, sandbox.Fault500, 0)
	if _, r := f.complete(t, ok); r.StatusCode != 200 {
		t.Errorf("with a token fault pending: got %d, want 200", r.StatusCode)
	}
}

func TestModelAdminAPI(t *testing.T) {
	f := setup(t, nil)
	ctx := t.Context()
	ac, err := sandbox.NewAdminClient(f.base, adminToken, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := ac.ScriptModel(ctx, sandbox.TextReply("one"), sandbox.TextReply("two")); err != nil || n != 2 {
		t.Fatalf("ScriptModel: got %d, %v, want 2 pending", n, err)
	}
	if n, err := ac.ClearModelScript(ctx); err != nil || n != 2 {
		t.Fatalf("ClearModelScript: got %d, %v, want 2 cleared", n, err)
	}

	// Arguments may be given as a JSON value or as a string.
	tests := []struct {
		name, body string
		status     int
		wantArgs   string
	}{
		{"arguments as an object", `{"replies":[{"tool_calls":[{"name":"post_message","arguments":{"channel": "general", "text": "hi"}}]}]}`, 200, `{"channel":"general","text":"hi"}`},
		{"arguments as a string", `{"replies":[{"tool_calls":[{"name":"post_message","arguments":"{\"text\":"}]}]}`, 200, `{"text":`},
		{"no arguments", `{"replies":[{"tool_calls":[{"name":"post_message"}]}]}`, 200, `{}`},
		{"empty reply", `{"replies":[{}]}`, 400, ""},
		{"unknown field", `{"replies":[{"tool_calls":[{"name":"x","args":{}}]}]}`, 400, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := f.call(t, "POST", "/admin/model/script", adminToken, tt.body, nil, nil)
			if r.StatusCode != tt.status {
				t.Fatalf("got %d, want %d", r.StatusCode, tt.status)
			}
			if tt.status != 200 {
				return
			}
			c, _ := f.complete(t, chat(sandbox.ModelSmall, `"messages":[{"role":"user","content":"go"}]`))
			if calls := c.calls(); len(calls) != 1 || calls[0].Function.Arguments != tt.wantArgs {
				t.Errorf("got %+v, want arguments %s", calls, tt.wantArgs)
			}
		})
	}

	if err := ac.FailModelNext(ctx, 1, sandbox.Fault429, 3*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, r := f.complete(t, chat(sandbox.ModelSmall, `"messages":[{"role":"user","content":"go"}]`)); r.StatusCode != 429 || r.Header.Get("Retry-After") != "3" {
		t.Errorf("after FailModelNext: got %d Retry-After %q, want 429 and 3", r.StatusCode, r.Header.Get("Retry-After"))
	}
	var apiErr *sandbox.APIError
	if err := ac.FailModelNext(ctx, 1, "teapot", 0); !errors.As(err, &apiErr) || apiErr.Status != 400 {
		t.Errorf("bad kind: got %v, want a 400", err)
	}
	if r := f.call(t, "POST", "/admin/model/script", "wrong", `{"replies":[]}`, nil, nil); r.StatusCode != 401 {
		t.Errorf("wrong admin token: got %d, want 401", r.StatusCode)
	}
	if e := f.p.Endpoints().Model; e != f.base+"/v1" {
		t.Errorf("Endpoints().Model: got %q, want %q", e, f.base+"/v1")
	}
}

func TestModelConcurrentScript(t *testing.T) {
	f := setup(t, nil)
	const scripted, requests = 10, 25
	for i := range scripted {
		_ = f.p.ScriptModel(sandbox.TextReply(fmt.Sprintf("reply %d", i)))
	}
	body := chat(sandbox.ModelSmall, `"messages":[{"role":"user","content":"hi"}]`)
	var wg sync.WaitGroup
	var mu sync.Mutex
	seen := map[string]int{}
	for range requests {
		wg.Go(func() {
			// Plain net/http: t.Fatal belongs to the test's goroutine.
			req, _ := http.NewRequestWithContext(t.Context(), "POST", f.base+"/v1/chat/completions", strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+f.p.ModelKey())
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			var c completion
			if err := json.NewDecoder(resp.Body).Decode(&c); err != nil || resp.StatusCode != 200 {
				t.Errorf("got %d, %v, want 200", resp.StatusCode, err)
			}
			mu.Lock()
			seen[c.content()]++
			mu.Unlock()
		})
	}
	wg.Wait()
	for i := range scripted {
		if n := seen[fmt.Sprintf("reply %d", i)]; n != 1 {
			t.Errorf("reply %d served %d times, want once", i, n)
		}
	}
	st := f.p.Stats().Model
	if st.Requests != requests || st.Completions != requests || st.Scripted != scripted || st.ScriptPending != 0 {
		t.Errorf("stats: got %+v, want %d requests and completions, %d scripted", st, requests, scripted)
	}
}
