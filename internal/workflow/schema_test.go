package workflow

import (
	"strings"
	"testing"
)

func TestSchemaChecksOutput(t *testing.T) {
	s, err := CompileSchema([]byte(`{"type":"object","required":["email","score"],"properties":{"email":{"type":"string","format":"email"},"score":{"type":"integer","minimum":0}}}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		doc, want string
	}{
		{`{"email":"a@b.example","score":3}`, ""},
		{`{"email":"a@b.example"}`, "missing property"},
		{`{"email":"a@b.example","score":-1}`, "/score"},
		{`{"email":"a@b.example","score":"high"}`, "/score"},
		{`[1,2]`, "want object"},
		{`not json`, "not JSON"},
	} {
		err := s.Check([]byte(tc.doc))
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v, want it accepted", tc.doc, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want an error with %q", tc.doc, err, tc.want)
		}
	}
}

func TestSchemaProblems(t *testing.T) {
	for _, tc := range []struct{ schema, want string }{
		{``, "Describe the JSON"},
		{`[]`, "must be a JSON object"},
		{`{"type":"string"}`, `"type": "object"`},
		{`{"type":"object","properties":{"a":{"$ref":"https://example.com/x.json"}}}`, "not a valid JSON Schema"},
		{`{"type":"object","properties":{"a":{"type":"nonsense"}}}`, "not a valid JSON Schema"},
		{`{"type":"object","properties":{"a":{"type":"string"}}}`, ""},
	} {
		got := schemaProblem([]byte(tc.schema))
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("schema %s: %q, want %q", tc.schema, got, tc.want)
		}
	}
}
