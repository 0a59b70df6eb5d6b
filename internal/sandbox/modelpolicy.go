package sandbox

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The default policy answers when no scripted reply is queued. It is
// deliberately simple and deterministic; doc.go describes it.

const (
	// A schema may be recursive or ask for many items: these bound the
	// value built for it.
	maxSchemaDepth  = 8
	maxSchemaValues = 1000
	maxSchemaItems  = 20
	maxSchemaString = 1000
	shortTextRunes  = 280
	echoRunes       = 160
)

// postWords are the words of a request to post or tell something.
var postWords = map[string]bool{
	"post": true, "posts": true, "posted": true, "posting": true,
	"send": true, "sends": true, "sending": true,
	"tell": true, "tells": true, "say": true, "says": true,
	"announce": true, "notify": true, "inform": true, "share": true,
	"remind": true, "message": true, "ping": true, "publish": true,
}

// postToolWords mark a tool that posts something.
var postToolWords = []string{"post", "message", "send", "notify", "chat"}

var (
	channelMention = regexp.MustCompile(`#([A-Za-z0-9_-]+)`)
	quoted         = regexp.MustCompile(`"([^"]+)"|“([^”]+)”`)
)

type toolResult struct {
	name, content string
}

func defaultReply(req *chatRequest) ModelReply {
	user, last := "", -1
	var instructions []string
	for i, m := range req.messages {
		switch m.role {
		case "user":
			user, last = m.text, i
		case "system", "developer":
			instructions = append(instructions, m.text)
		}
	}
	var results []toolResult
	for _, m := range req.messages[last+1:] {
		if m.role == "tool" {
			results = append(results, toolResult{name: req.callNames[m.toolCallID], content: m.text})
		}
	}
	standing := strings.Join(instructions, "\n")
	if t := pickTool(req, user, standing, len(results)); t != nil {
		return ModelReply{ToolCalls: []ModelToolCall{{Name: t.name, Arguments: toolArguments(t, user, standing)}}}
	}
	text := answerText(req.model.id, user, results)
	switch req.format {
	case "json_object":
		b, _ := json.Marshal(map[string]string{"answer": text})
		return ModelReply{Content: string(b)}
	case "json_schema":
		v := fitSchema(req.schema, filler{channel: "general", text: text})
		b, _ := json.Marshal(v)
		return ModelReply{Content: string(b)}
	}
	return ModelReply{Content: text}
}

// pickTool is the tool to call, or nil to answer with text. Under "auto"
// the posting tool is called when the user's message asks to post, or
// when the instructions (system or developer messages) do: a standing
// order such as "When a lead comes in, post it to #general" applies to
// every message, as a real model would follow it.
func pickTool(req *chatRequest, user, instructions string, results int) *chatTool {
	switch req.choice {
	case "none":
		return nil
	case "function":
		i := slices.IndexFunc(req.tools, func(t chatTool) bool { return t.name == req.choose })
		return &req.tools[i]
	case "required":
		if t := postingTool(req.tools); t != nil {
			return t
		}
		return &req.tools[0]
	}
	if results > 0 || !(asksToPost(user) || asksToPost(instructions)) {
		return nil
	}
	return postingTool(req.tools)
}

func asksToPost(s string) bool {
	words := strings.FieldsFunc(strings.ToLower(s), func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) })
	for _, w := range words {
		if postWords[w] {
			return true
		}
	}
	return slices.Contains(words, "let") && slices.Contains(words, "know")
}

// postingTool is the first tool whose name, or failing that whose
// description, mentions posting or messages.
func postingTool(tools []chatTool) *chatTool {
	for _, field := range []func(chatTool) string{
		func(t chatTool) string { return t.name },
		func(t chatTool) string { return t.description },
	} {
		for i, t := range tools {
			f := strings.ToLower(field(t))
			for _, w := range postToolWords {
				if strings.Contains(f, w) {
					return &tools[i]
				}
			}
		}
	}
	return nil
}

// toolArguments fills the tool's parameters from the user's message; the
// channel is the message's first #channel, else the instructions'.
func toolArguments(t *chatTool, user, instructions string) string {
	f := filler{channel: "general", text: shortText(user)}
	if m := channelMention.FindStringSubmatch(user); m != nil {
		f.channel = strings.ToLower(m[1])
	} else if m := channelMention.FindStringSubmatch(instructions); m != nil {
		f.channel = strings.ToLower(m[1])
	}
	var v any = map[string]string{"channel": f.channel, "text": f.text}
	if t.params != nil {
		v = fitSchema(t.params, f)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// shortText is what to post: for a message that is a JSON object (after
// an optional "Label:" line, as in "Input:\n{...}") its fields, else the
// first quoted text in s, else what follows its first colon, else s
// itself; spaces collapsed, at most 280 characters.
func shortText(s string) string {
	if fields, ok := jsonFields(s); ok {
		s = fields
	} else if m := quoted.FindStringSubmatch(s); m != nil {
		s = m[1] + m[2]
	} else if _, after, ok := strings.Cut(s, ":"); ok && strings.TrimSpace(after) != "" {
		s = after
	}
	s = strings.Join(strings.Fields(s), " ")
	if s == "" {
		return "Hello from the sandbox model."
	}
	s, _ = clip(s, shortTextRunes)
	return s
}

func answerText(model, user string, results []toolResult) string {
	if len(results) > 0 {
		parts := make([]string, len(results))
		for i, r := range results {
			name := r.name
			if name == "" {
				name = "a tool"
			}
			c, _ := clip(strings.Join(strings.Fields(r.content), " "), echoRunes)
			parts[i] = name + " returned " + c
		}
		return "Done. " + strings.Join(parts, "; ") + "."
	}
	if u := strings.Join(strings.Fields(user), " "); u != "" {
		u, _ = clip(u, echoRunes)
		return fmt.Sprintf("This is %s, the sandbox's scripted model. You said: %q", model, u)
	}
	return fmt.Sprintf("This is %s, the sandbox's scripted model.", model)
}

// filler gives properties whose names say what they hold a real value:
// the channel to post in, the text to post or the answer.
type filler struct {
	channel, text string
}

func (f filler) value(name string) (string, bool) {
	switch strings.ToLower(name) {
	case "channel", "channel_id", "channel_name", "channelid", "channelname", "room", "conversation":
		return f.channel, true
	case "text", "message", "content", "body", "msg", "note", "comment", "summary", "answer", "reply", "response", "result":
		return f.text, true
	}
	return "", false
}

// fitSchema is a value that fits the JSON Schema s: const or the first
// enum value; the first branch of anyOf, oneOf
// or allOf; objects with their required properties (all properties when
// the schema lists none as required); arrays with minItems items (one
// when unset); strings from the filler, by format, or "example"; numbers
// at their minimum or 0; booleans false. Past the depth or size bounds it
// gives null.
func fitSchema(s map[string]any, f filler) any {
	g := &schemaValues{root: s, f: f, left: maxSchemaValues}
	return g.value(s, 0, "")
}

type schemaValues struct {
	root map[string]any // for $ref
	f    filler
	left int // values still allowed
}

// value fits s, the schema of the property name (or "").
func (g *schemaValues) value(s map[string]any, depth int, name string) any {
	if depth > maxSchemaDepth || g.left <= 0 {
		return nil
	}
	g.left--
	if ref, ok := s["$ref"].(string); ok {
		if t := resolveRef(g.root, ref); t != nil {
			return g.value(t, depth+1, name)
		}
		return nil
	}
	if v, ok := s["const"]; ok {
		return v
	}
	if e, ok := s["enum"].([]any); ok && len(e) > 0 {
		if v, ok := g.f.value(name); ok && slices.Contains(e, any(v)) {
			return v
		}
		return e[0]
	}
	for _, k := range []string{"anyOf", "oneOf", "allOf"} {
		alts, _ := s[k].([]any)
		for _, a := range alts {
			if m, ok := a.(map[string]any); ok && schemaType(m) != "null" {
				return g.value(m, depth+1, name)
			}
		}
	}
	switch schemaType(s) {
	case "object":
		props, _ := s["properties"].(map[string]any)
		var keys []string
		if req, ok := s["required"].([]any); ok {
			for _, k := range req {
				if k, ok := k.(string); ok {
					keys = append(keys, k)
				}
			}
		} else {
			for k := range props {
				keys = append(keys, k)
			}
		}
		out := make(map[string]any, len(keys))
		for _, k := range keys {
			ps, _ := props[k].(map[string]any)
			if ps == nil {
				ps = map[string]any{}
			}
			out[k] = g.value(ps, depth+1, k)
		}
		return out
	case "array":
		items, _ := s["items"].(map[string]any)
		n := 1
		if v, ok := number(s, "minItems"); ok {
			n = int(v)
		}
		if v, ok := number(s, "maxItems"); ok {
			n = min(n, int(v))
		}
		n = min(max(n, 0), maxSchemaItems)
		out := make([]any, 0, n)
		for range n {
			if items == nil {
				out = append(out, "example")
				continue
			}
			out = append(out, g.value(items, depth+1, ""))
		}
		return out
	case "string":
		return stringValue(s, name, g.f)
	case "integer":
		return int64(numberValue(s, true))
	case "number":
		return numberValue(s, false)
	case "boolean":
		return false
	case "null":
		return nil
	}
	if depth == 0 {
		return map[string]any{}
	}
	return stringValue(s, name, g.f)
}

func schemaType(s map[string]any) string {
	switch t := s["type"].(type) {
	case string:
		return t
	case []any:
		for _, x := range t {
			if x, ok := x.(string); ok && x != "null" {
				return x
			}
		}
		if len(t) > 0 {
			return "null"
		}
	}
	if _, ok := s["properties"]; ok {
		return "object"
	}
	if _, ok := s["items"]; ok {
		return "array"
	}
	return ""
}

// resolveRef follows a local reference such as #/$defs/Item.
func resolveRef(root map[string]any, ref string) map[string]any {
	rest, ok := strings.CutPrefix(ref, "#")
	if !ok {
		return nil
	}
	cur := root
	for _, part := range strings.Split(strings.TrimPrefix(rest, "/"), "/") {
		if part == "" {
			continue
		}
		part = strings.ReplaceAll(strings.ReplaceAll(part, "~1", "/"), "~0", "~")
		next, ok := cur[part].(map[string]any)
		if !ok {
			return nil
		}
		cur = next
	}
	return cur
}

func number(s map[string]any, key string) (float64, bool) {
	v, ok := s[key].(float64)
	return v, ok
}

func stringValue(s map[string]any, name string, f filler) string {
	v, ok := f.value(name)
	if !ok {
		switch s["format"] {
		case "date-time":
			v = "2025-01-01T00:00:00Z"
		case "date":
			v = "2025-01-01"
		case "time":
			v = "00:00:00Z"
		case "email":
			v = "someone@example.com"
		case "uri", "url":
			v = "https://example.com/"
		case "uuid":
			v = "00000000-0000-4000-8000-000000000000"
		default:
			v = "example"
		}
	}
	if n, ok := number(s, "minLength"); ok {
		v += strings.Repeat("x", max(min(int(n), maxSchemaString)-utf8.RuneCountInString(v), 0))
	}
	if n, ok := number(s, "maxLength"); ok {
		v, _ = clip(v, int(n))
	}
	return v
}

func numberValue(s map[string]any, integer bool) float64 {
	v := 0.0
	if lo, ok := number(s, "minimum"); ok {
		v = lo
	}
	if lo, ok := number(s, "exclusiveMinimum"); ok {
		v = lo + 1
	}
	if hi, ok := number(s, "maximum"); ok && v > hi {
		v = hi
	}
	if hi, ok := number(s, "exclusiveMaximum"); ok && v >= hi {
		v = hi - 1
	}
	if integer {
		v = math.Ceil(v)
	}
	return v
}

// jsonFields reads a message that is a JSON object, alone or after a
// first line ending in a colon, as text to post: a lone field's value, or
// "key: value" for each field in order, joined by "; ". Nested values are
// shown as compact JSON.
func jsonFields(s string) (string, bool) {
	s = strings.TrimSpace(s)
	if label, rest, ok := strings.Cut(s, "\n"); ok && strings.HasSuffix(strings.TrimSpace(label), ":") {
		s = strings.TrimSpace(rest)
	}
	if !strings.HasPrefix(s, "{") || !json.Valid([]byte(s)) {
		return "", false
	}
	dec := json.NewDecoder(strings.NewReader(s))
	if _, err := dec.Token(); err != nil { // {
		return "", false
	}
	var keys, values []string
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return "", false
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return "", false
		}
		var str string
		if json.Unmarshal(v, &str) != nil {
			str = string(v)
		}
		keys, values = append(keys, fmt.Sprint(k)), append(values, str)
	}
	switch len(keys) {
	case 0:
		return "", false
	case 1:
		return values[0], true
	}
	parts := make([]string, len(keys))
	for i := range keys {
		parts[i] = keys[i] + ": " + values[i]
	}
	return strings.Join(parts, "; "), true
}
