package web

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"taskjuice/internal/llm"
	"taskjuice/internal/vault"
	"taskjuice/internal/workflow"
)

// TestEditorAISteps: AI Generate and AI Extract are added from "Add step",
// offered the workspace's models, saved with their settings, and a schema
// that is not JSON is refused next to its field.
func TestEditorAISteps(t *testing.T) {
	e := newEditorEnv(t)
	key, _, err := vault.GenerateKey()
	check(t, err)
	e.h.Models = llm.NewService(e.db, vault.NewKeyring(key), llm.Options{})
	p, err := e.h.Models.Create(context.Background(), e.acme.ID, llm.ProviderInput{Name: "Hosted", BaseURL: "https://models.example/v1", APIKey: "sk-test-key-1234",
		Models: []llm.ModelInput{{Model: "small", InputUSDPerMTok: "0.1", OutputUSDPerMTok: "0.4", MaxOutputTokens: 512}}})
	check(t, err)
	model := p.ID + "|small"
	id, base := e.workflow("Lead triage")

	wantSaved(t, "add AI Extract", e.post(base+"/edit/steps", url.Values{"kind": {"ai-extract"}}), base, "step-step1")
	c := card(e.get(base+"/edit").Body, "step1")
	for _, want := range []string{`value="` + model + `"`, "Hosted · small", `name="schema"`, "AI_OUTPUT_INVALID"} {
		if !strings.Contains(c, want) {
			t.Fatalf("AI Extract card lacks %q: %.2000s", want, c)
		}
	}
	bad := e.post(base+"/edit/steps/step1", url.Values{"model": {model}, "text": {"{{ $trigger.body }}"}, "schema": {"{not json"}})
	if bad.Status != 422 || !strings.Contains(bad.Body, "The schema must be JSON") {
		t.Fatalf("bad schema: %d %.300s", bad.Status, card(bad.Body, "step1"))
	}
	schema := `{"type":"object","required":["email"],"properties":{"email":{"type":"string"}}}`
	wantSaved(t, "configure AI Extract", e.post(base+"/edit/steps/step1", url.Values{
		"name": {"Read the lead"}, "model": {model}, "text": {"{{ $trigger.body }}"}, "schema": {schema}, "maxTokens": {"200"},
	}), base, "step-step1")
	wantSaved(t, "add AI Generate", e.post(base+"/edit/steps", url.Values{"kind": {"ai-generate"}}), base, "step-step2")
	wantSaved(t, "configure AI Generate", e.post(base+"/edit/steps/step2", url.Values{
		"name": {"Write a reply"}, "model": {model}, "prompt": {"Greet {{ $steps.step1.data.email }}"},
	}), base, "step-step2")

	g := e.graph(id)
	var ex workflow.AIExtractConfig
	check(t, json.Unmarshal(g.Nodes[0].Config, &ex))
	var gen workflow.AIGenerateConfig
	check(t, json.Unmarshal(g.Nodes[1].Config, &gen))
	if ex.Model.ProviderID != p.ID || ex.Model.Name != "small" || ex.MaxTokens != 200 || ex.Text != "{{ $trigger.body }}" {
		t.Fatalf("AI Extract saved as %+v", ex)
	}
	var sch map[string]any
	check(t, json.Unmarshal(ex.Schema, &sch))
	if sch["type"] != "object" || gen.Prompt != "Greet {{ $steps.step1.data.email }}" || gen.Model.Name != "small" {
		t.Fatalf("saved: extract schema %s, generate %+v", ex.Schema, gen)
	}
	if ed := e.get(base + "/edit"); !strings.Contains(ed.Body, "No problems found") {
		t.Fatalf("editor of a valid AI draft: %.2000s", ed.Body)
	}
	// A model the provider does not offer is a problem at publish.
	wantSaved(t, "unknown model", e.post(base+"/edit/steps/step2", url.Values{"model": {p.ID + "|huge"}, "prompt": {"Hi"}}), base, "step-step2")
	if ed := e.get(base + "/edit"); !strings.Contains(ed.Body, `The provider does not offer the model &#34;huge&#34;`) {
		t.Fatalf("editor does not flag the unknown model: %.300s", card(ed.Body, "step2"))
	}
}
