package workflow_test

import (
	"testing"

	"taskjuice/internal/workflow"
)

// FuzzValidate: whatever document arrives (an import, an API call), parsing
// and validating it never panics.
func FuzzValidate(f *testing.F) {
	f.Add([]byte(base))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"schema":1,"trigger":{"id":"t","kind":"manual"},"nodes":[{"id":"a","kind":"loop","config":{"items":"{{ $trigger }}"}}],"edges":[{"from":"t","to":"a"},{"from":"a","to":"a","when":"each"}]}`))
	f.Add([]byte(`{"schema":1,"trigger":{"id":"t","kind":"schedule","config":{"cron":"* * * * *"}},"nodes":[{"id":"s","kind":"switch","config":{"value":"x","cases":[{"name":"a","equals":1},{"name":"a"}]}}],"edges":[{"from":"t","to":"s"},{"from":"s","to":"t","when":"a"}]}`))
	f.Add([]byte(`{"schema":1,"trigger":null,"nodes":null,"edges":[{"from":"","to":""}]}`))
	f.Add([]byte(`{"schema":1,"trigger":{"id":"t","kind":"webhook","config":null,"connection":{"clientProvides":true,"id":"x"}},"nodes":[{"id":"h","kind":"http","config":{"method":"get","url":"::","retry":{"maxAttempts":0}}}],"edges":[{"from":"t","to":"h"},{"from":"t","to":"h"}]}`))
	c := checks(f)
	f.Fuzz(func(t *testing.T, doc []byte) {
		g, err := workflow.ParseGraph(doc)
		if err != nil {
			return
		}
		_ = workflow.Validate(g, c)
		_ = workflow.Validate(g, workflow.Checks{})
	})
}
