package engine_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"taskjuice/internal/db"
	"taskjuice/internal/db/dbtest"
	"taskjuice/internal/engine"
	"taskjuice/internal/workflow"
)

// TestConcurrentStartsDedup: many concurrent starts, some sharing dedup
// keys (one of them recorded before), go through the group commit: one run
// per key, every caller answered with its key's run, every keyless start a
// run of its own.
func TestConcurrentStartsDedup(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		wf := f.publish([]workflow.Node{{ID: "done", Kind: workflow.NodeTransform, Config: json.RawMessage(`{"output": 1}`)}})
		before, err := f.eng.StartRun(f.ctx, wf, json.RawMessage(`{"old": true}`), "webhook", "key-0")
		must(t, err)

		const callers, keys = 200, 10
		type answer struct {
			key, id string
			err     error
		}
		answers := make([]answer, callers)
		var wg sync.WaitGroup
		for i := range callers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				key := ""
				if i%2 == 0 {
					key = fmt.Sprintf("key-%d", i/2%keys)
				}
				id, err := f.eng.StartRun(f.ctx, wf, json.RawMessage(fmt.Sprintf(`{"i": %d}`, i)), "webhook", key)
				answers[i] = answer{key, id, err}
			}()
		}
		wg.Wait()

		byKey := map[string]string{"key-0": before}
		keyless := map[string]bool{}
		for i, a := range answers {
			if a.err != nil {
				t.Fatalf("start %d: %v", i, a.err)
			}
			if a.key == "" {
				if keyless[a.id] {
					t.Errorf("start %d without a key: got run %s twice", i, a.id)
				}
				keyless[a.id] = true
				continue
			}
			if got, ok := byKey[a.key]; ok && got != a.id {
				t.Errorf("start %d with %s: got run %s, want %s", i, a.key, a.id, got)
			}
			byKey[a.key] = a.id
		}
		if len(byKey) != keys {
			t.Errorf("got %d keys answered, want %d", len(byKey), keys)
		}
		var runs, distinctKeys int
		must(t, d.Read().QueryRowContext(f.ctx, `SELECT count(*), count(DISTINCT dedup_key) FROM runs WHERE workflow_id = $1`, wf).Scan(&runs, &distinctKeys))
		if want := keys + callers/2; runs != want || distinctKeys != keys {
			t.Errorf("got %d runs with %d dedup keys, want %d runs with %d keys", runs, distinctKeys, want, keys)
		}
		for _, id := range byKey {
			if r := f.run(id); r.WorkflowID != wf {
				t.Errorf("run %s: workflow %s, want %s", id, r.WorkflowID, wf)
			}
		}
		for id := range keyless {
			if r := f.run(id); r.Status != engine.StatusPending {
				t.Errorf("run %s: status %s, want pending", id, r.Status)
			}
		}
	})
}

// TestGroupStartFailureFailsOnlyItsOwn: a run whose write fails inside a
// batch fails only its own caller; the others of the batch are recorded.
func TestGroupStartFailureFailsOnlyItsOwn(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		wf := f.publish([]workflow.Node{{ID: "done", Kind: workflow.NodeTransform, Config: json.RawMessage(`{"output": 1}`)}})
		const others = 20
		boom := errors.New("disk on fire")
		queued := make(chan struct{})
		engine.SetStartFault(f.eng, func(payload string) error {
			switch {
			case strings.Contains(payload, "gate"):
				// The first commit holds on until the rest are queued,
				// so that they are all in the next batch.
				<-queued
			case strings.Contains(payload, "boom"):
				return boom
			}
			return nil
		})
		gateDone := make(chan error, 1)
		go func() {
			_, err := f.eng.StartRun(f.ctx, wf, json.RawMessage(`{"gate": true}`), "webhook", "")
			gateDone <- err
		}()
		// The gate leads; wait until it is the one committing.
		waitFor(t, 20*time.Second, "the first start to lead a commit", func() bool { return engine.QueuedStarts(f.eng) == 0 && engine.StartsLeading(f.eng) })

		type answer struct {
			id  string
			err error
		}
		answers := make([]answer, others+1)
		var wg sync.WaitGroup
		for i := range others + 1 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				payload := fmt.Sprintf(`{"i": %d}`, i)
				if i == others {
					payload = `{"boom": true}`
				}
				id, err := f.eng.StartRun(f.ctx, wf, json.RawMessage(payload), "webhook", fmt.Sprintf("k-%d", i))
				answers[i] = answer{id, err}
			}()
		}
		waitFor(t, 20*time.Second, "the others to queue", func() bool { return engine.QueuedStarts(f.eng) == others+1 })
		close(queued)
		wg.Wait()
		if err := <-gateDone; err != nil {
			t.Fatalf("gate start: %v", err)
		}
		for i, a := range answers[:others] {
			if a.err != nil || a.id == "" {
				t.Errorf("start %d: id %q, err %v; want a run", i, a.id, a.err)
			}
		}
		if a := answers[others]; !errors.Is(a.err, boom) || a.id != "" {
			t.Errorf("failing start: id %q, err %v; want %v", a.id, a.err, boom)
		}
		var runs int
		must(t, d.Read().QueryRowContext(f.ctx, `SELECT count(*) FROM runs WHERE workflow_id = $1`, wf).Scan(&runs))
		if runs != others+1 {
			t.Errorf("got %d runs, want %d (the gate and the %d good ones)", runs, others+1, others)
		}
	})
}
