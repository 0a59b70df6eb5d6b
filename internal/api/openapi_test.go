package api_test

import (
	"encoding/json"
	"sort"
	"strings"
	"testing"

	"taskjuice/internal/api"
)

// TestOpenAPIMatchesRoutes keeps the document and the route table in step:
// every route is documented and every documented operation has a route.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(api.OpenAPIDocument(), &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		for method := range ops {
			documented[strings.ToUpper(method)+" "+path] = true
		}
	}
	routed := map[string]bool{}
	for _, rt := range (&api.Handler{}).Routes() {
		routed[rt.Method+" "+rt.Path] = true
	}
	var missing, extra []string
	for r := range routed {
		if !documented[r] {
			missing = append(missing, r)
		}
	}
	for d := range documented {
		if !routed[d] {
			extra = append(extra, d)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 || len(extra) > 0 {
		t.Fatalf("openapi.json out of step with the routes:\n  undocumented routes: %v\n  documented without a route: %v", missing, extra)
	}
}
