package engine_test

import (
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"sync"
	"testing"

	"taskjuice/internal/apperr"
	"taskjuice/internal/db"
	"taskjuice/internal/db/dbtest"
	"taskjuice/internal/engine"
	"taskjuice/internal/workflow"
)

// Runs are found by a value in their trigger payload or a step's output,
// once the indexer has seen them: equals is exact, contains finds a word
// or a list item whatever the case, a path through a list reaches every
// item, the other filters still apply, pages follow the search's order,
// and a waiting run's payload is searchable before its outputs are.
func TestSearchRunsByValue(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		wf := f.publish([]workflow.Node{{ID: "lookup", Kind: workflow.NodeTransform,
			Config: json.RawMessage(`{"output": {"contact": {"id": "C-42", "owner": "Dana Scully"}}}`)}})
		waits := f.publish([]workflow.Node{{ID: "ok", Kind: workflow.NodeApproval, Config: json.RawMessage(`{"message": "Go?"}`)}})
		start := func(wf, payload string) string {
			id, err := f.eng.StartRun(f.ctx, wf, json.RawMessage(payload), "webhook", "")
			must(t, err)
			return id
		}
		var ids []string
		for i := range 7 {
			plan := "basic"
			if i%2 == 0 {
				plan = "pro"
			}
			ids = append(ids, start(wf, `{"n": `+string(rune('0'+i))+`, "customer": {"email": "lead`+string(rune('0'+i))+`@acme.example", "plan": "`+plan+`"},
				"tags": ["VIP", "north"], "items": [{"sku": "A-1"}, {"sku": "B-2"}], "note": "Called back on Tuesday"}`))
		}
		held := start(waits, `{"customer": {"email": "held@acme.example"}}`)
		drainAll(t, f)
		search := func(field, match, value string, extra map[string]string) []string {
			t.Helper()
			q := map[string]string{"field": field, "match": match, "value": value}
			for k, v := range extra {
				q[k] = v
			}
			filter, err := engine.FilterFromQuery(func(k string) string { return q[k] })
			must(t, err)
			filter.Limit = 50
			runs, err := f.eng.List(f.ctx, f.ws.ID, filter)
			must(t, err)
			var out []string
			for _, r := range runs {
				out = append(out, r.ID)
			}
			return out
		}
		// Nothing is indexed until the indexer runs.
		if got := search("$trigger.customer.email", "", "lead3@acme.example", nil); len(got) != 0 {
			t.Fatalf("found %v before indexing", got)
		}
		rep, err := f.eng.IndexRuns(f.ctx)
		must(t, err)
		if rep.Runs != 8 || rep.Values == 0 {
			t.Fatalf("indexed %+v, want the 8 runs", rep)
		}
		cases := []struct {
			field, match, value string
			extra               map[string]string
			want                []string
		}{
			{"$trigger.customer.email", "equals", "lead3@acme.example", nil, []string{ids[3]}},
			{"trigger.customer.email", "", "LEAD3@acme.example", nil, nil}, // equals is exact
			{"$trigger.customer.plan", "equals", "pro", nil, []string{ids[6], ids[4], ids[2], ids[0]}},
			{"$trigger.customer.plan", "equals", "pro", map[string]string{"status": "failed"}, nil},
			{"$trigger.n", "equals", "5", nil, []string{ids[5]}},                                      // a number, as JSON writes it
			{"$trigger.tags", "contains", "vip", nil, rev(ids)},                                       // a list item, any case
			{"$trigger.items.sku", "equals", "B-2", nil, rev(ids)},                                    // through a list
			{"$trigger.note", "contains", "TUESDAY", nil, rev(ids)},                                   // a word
			{"$trigger.note", "contains", "tues", nil, nil},                                           // not part of a word
			{"$trigger.customer.email", "contains", "acme", nil, append([]string{held}, rev(ids)...)}, // the address's words, the waiting run too
			{"$steps.lookup.data.contact.owner", "contains", "scully", nil, rev(ids)},
			{"$steps.lookup.data.contact.id", "equals", "C-42", nil, rev(ids)},
			{"$trigger.customer.email", "equals", "held@acme.example", nil, []string{held}},
		}
		for _, c := range cases {
			if got := search(c.field, c.match, c.value, c.extra); !slices.Equal(got, c.want) {
				t.Errorf("%s %s %q %v: got %v, want %v", c.field, c.match, c.value, c.extra, got, c.want)
			}
		}

		// Pages follow the search, newest first.
		q := map[string]string{"field": "$trigger.tags", "match": "contains", "value": "north"}
		filter, err := engine.FilterFromQuery(func(k string) string { return q[k] })
		must(t, err)
		filter.Limit = 3
		var paged []string
		for {
			page, err := f.eng.List(f.ctx, f.ws.ID, filter)
			must(t, err)
			for _, r := range page {
				paged = append(paged, r.ID)
			}
			if len(page) < filter.Limit {
				break
			}
			filter.Before = page[len(page)-1].ID
		}
		if !slices.Equal(paged, rev(ids)) {
			t.Fatalf("paged search: %v, want %v", paged, rev(ids))
		}
		n, err := f.eng.CountRuns(f.ctx, f.ws.ID, filter, 100)
		must(t, err)
		if n != 7 {
			t.Fatalf("counted %d, want 7", n)
		}

		// The waiting run's outputs are indexed once it finishes; a
		// second pass finds nothing new meanwhile.
		rep, err = f.eng.IndexRuns(f.ctx)
		must(t, err)
		if rep.Runs != 0 {
			t.Fatalf("second pass indexed %+v, want nothing", rep)
		}

		// Bad filters are refused with a message.
		for _, q := range []map[string]string{
			{"field": "customer.email", "value": "x"},
			{"field": "$steps.lookup.contact", "value": "x"},
			{"field": "$trigger.a[0]", "value": "x"},
			{"field": "$trigger.email"},
			{"field": "$trigger.email", "value": "x", "match": "like"},
		} {
			if _, err := engine.FilterFromQuery(func(k string) string { return q[k] }); !apperr.Is(err, apperr.KindInvalid) {
				t.Errorf("filter %v: %v, want invalid", q, err)
			}
		}
	})
}

func rev(s []string) []string {
	out := slices.Clone(s)
	slices.Reverse(out)
	return out
}

// Two indexers at once (two processes on one database) index each run
// once: more runs than one batch, no value written twice, every run done.
func TestIndexRunsConcurrently(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		wf := f.publish([]workflow.Node{{ID: "lookup", Kind: workflow.NodeTransform,
			Config: json.RawMessage(`{"output": {"contact": {"owner": "Dana Scully"}}}`)}})
		const runs = 600
		for i := range runs {
			_, err := f.eng.StartRun(f.ctx, wf, json.RawMessage(`{"customer": {"email": "lead`+strconv.Itoa(i)+`@acme.example"}}`), "webhook", "")
			must(t, err)
		}
		drainAll(t, f)
		reps := make([]engine.IndexReport, 2)
		errs := make([]error, 2)
		var wg sync.WaitGroup
		for i := range reps {
			wg.Go(func() { reps[i], errs[i] = f.eng.IndexRuns(f.ctx) })
		}
		wg.Wait()
		must(t, errors.Join(errs...))
		if got := reps[0].Runs + reps[1].Runs; got != runs {
			t.Fatalf("indexed %d runs between the two (%+v), want %d", got, reps, runs)
		}
		var rows, distinct, left int
		must(t, d.Read().QueryRowContext(f.ctx, `SELECT COUNT(*) FROM run_values`).Scan(&rows))
		must(t, d.Read().QueryRowContext(f.ctx, `SELECT COUNT(*) FROM (SELECT DISTINCT run_id, field, value FROM run_values) x`).Scan(&distinct))
		must(t, d.Read().QueryRowContext(f.ctx, `SELECT COUNT(*) FROM runs WHERE searched < 2`).Scan(&left))
		// Per run: the address (exact, whole and its three words) and the
		// owner (exact and its two words).
		if rows != distinct || rows != runs*8 || left != 0 {
			t.Fatalf("%d values, %d distinct, want %d; %d runs left", rows, distinct, runs*8, left)
		}
	})
}
