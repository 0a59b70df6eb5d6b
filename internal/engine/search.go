package engine

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"

	"taskjuice/internal/apperr"
	"taskjuice/internal/db"
)

// Runs are found by a value in their trigger payload or a step's output
// through run_values, which IndexRuns fills in the background: each run's
// payload when it is first seen, its steps' outputs once it has finished.
// A field is named as an expression reaches it ("trigger.customer.email",
// "steps.find_contact.data.email"); through a list it reaches every item,
// as JSONata does ("trigger.items.sku").

// ValueMatch is how a search compares a field's value.
type ValueMatch string

const (
	// MatchEquals: the value is exactly this text (a number, true, false or
	// null written as JSON writes it); a list matches when an item does.
	MatchEquals ValueMatch = "equals"
	// MatchContains: the text holds this word, or the list holds this
	// item, whatever the case.
	MatchContains ValueMatch = "contains"
)

// ValueFilter keeps runs whose field matches Value.
type ValueFilter struct {
	Field string
	Match ValueMatch
	Value string
}

// Limits on what one document (a payload or an output) puts in the index.
const (
	searchMaxDepth   = 8
	searchMaxFields  = 100
	searchMaxValue   = 200
	searchMaxWords   = 16
	searchMaxFieldSz = 200
	searchBatch      = 500
)

// parseValueFilter reads the field, match and value parameters.
func parseValueFilter(field, match, value string) (*ValueFilter, error) {
	field, value = strings.TrimSpace(field), strings.TrimSpace(value)
	if field == "" && value == "" {
		return nil, nil
	}
	f, err := searchField(field)
	if err != nil {
		return nil, err
	}
	if value == "" {
		return nil, apperr.Invalid("value", "Give the value to look for in "+field)
	}
	if len(value) > searchMaxValue {
		return nil, apperr.Invalid("value", fmt.Sprintf("A value to look for is at most %d characters", searchMaxValue))
	}
	m := ValueMatch(strings.TrimSpace(match))
	switch m {
	case "":
		m = MatchEquals
	case MatchEquals, MatchContains:
	default:
		return nil, apperr.Invalid("match", "match must be equals or contains")
	}
	if m == MatchContains {
		value = strings.ToLower(value)
	}
	return &ValueFilter{Field: f, Match: m, Value: value}, nil
}

// searchField checks a field as a person writes it ($trigger.email,
// trigger.email, $steps.lookup.data.email) and returns it without the $.
func searchField(field string) (string, error) {
	f := strings.TrimPrefix(field, "$")
	bad := apperr.Invalid("field", `field must name a value in the trigger or a step's output, such as $trigger.customer.email or $steps.find_contact.data.email`)
	if f == "" || len(f) > searchMaxFieldSz {
		return "", bad
	}
	parts := strings.Split(f, ".")
	switch {
	case parts[0] == "trigger" && len(parts) >= 2:
	case parts[0] == "steps" && len(parts) >= 4 && parts[2] == "data":
	default:
		return "", bad
	}
	for _, p := range parts {
		if p == "" || strings.ContainsAny(p, "[]$ \t\"'") {
			return "", bad
		}
	}
	return f, nil
}

// key is the indexed value a filter looks up.
func (v ValueFilter) key() string {
	if v.Match == MatchContains {
		return "~" + v.Value
	}
	return "=" + v.Value
}

// searchWords splits text into the lowercase words contains finds.
func searchWords(s string) []string {
	words := strings.FieldsFunc(strings.ToLower(s), func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) })
	out := words[:0]
	for _, w := range words {
		if len(w) >= 2 && len(w) <= 64 {
			out = append(out, w)
		}
	}
	return out
}

// searchEntries are the (field, value) pairs a document puts in the index,
// without repeats, in a stable order.
func searchEntries(prefix string, doc []byte) [][2]string {
	if len(doc) == 0 || bytes.Equal(doc, []byte(redactedJSON)) {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil {
		return nil
	}
	seen := map[[2]string]bool{}
	fields := 0
	add := func(field, value string) {
		if len(field) <= searchMaxFieldSz && len(value) <= searchMaxValue+1 {
			seen[[2]string{field, value}] = true
		}
	}
	var walk func(field string, v any, depth int, inList bool)
	walk = func(field string, v any, depth int, inList bool) {
		if depth > searchMaxDepth || fields >= searchMaxFields {
			return
		}
		switch x := v.(type) {
		case map[string]any:
			for k, c := range x {
				if k != "" && !strings.ContainsAny(k, ".[]$ \t\"'") {
					walk(field+"."+k, c, depth+1, false)
				}
			}
		case []any:
			for _, c := range x {
				walk(field, c, depth+1, true)
			}
		default:
			fields++
			text := scalarText(x)
			add(field, "="+text)
			if s, ok := x.(string); ok {
				words := searchWords(s)
				if len(words) > searchMaxWords {
					words = words[:searchMaxWords]
				}
				for _, w := range words {
					add(field, "~"+w)
				}
				if lower := strings.ToLower(s); !strings.ContainsAny(s, " \t\n") && (len(words) != 1 || words[0] != lower) {
					add(field, "~"+lower) // one token, such as an address, found whole too
				}
			}
			if inList {
				add(field, "~"+strings.ToLower(text))
			}
		}
	}
	walk(prefix, v, 0, false)
	out := make([][2]string, 0, len(seen))
	for e := range seen {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i][0] != out[j][0] {
			return out[i][0] < out[j][0]
		}
		return out[i][1] < out[j][1]
	})
	return out
}

func scalarText(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case json.Number:
		if f, err := strconv.ParseFloat(string(x), 64); err == nil {
			return strconv.FormatFloat(f, 'f', -1, 64)
		}
		return string(x)
	case bool:
		return strconv.FormatBool(x)
	default:
		return "null"
	}
}

// IndexReport says what one pass of IndexRuns did.
type IndexReport struct {
	Runs, Values int
}

// IndexRuns indexes the runs not yet indexed (their payloads) and the
// finished runs whose outputs are not, a batch at a time, until none is
// left or ctx ends. Several processes may run it at once: a run is taken
// by the update that moves its state, so it is indexed once.
func (e *Engine) IndexRuns(ctx context.Context) (IndexReport, error) {
	var total IndexReport
	for ctx.Err() == nil {
		rep, err := e.indexBatch(ctx)
		total.Runs += rep.Runs
		total.Values += rep.Values
		if err != nil || rep.Runs == 0 {
			return total, err
		}
	}
	return total, ctx.Err()
}

type searchTodo struct {
	id, workspaceID string
	searched        int
	finished        bool
	created         time.Time
	payload         string
}

// indexBatch indexes up to searchBatch runs of each kind in one
// transaction of a few statements: one update takes the runs, one query
// reads the finished ones' outputs, and multi-row inserts write the values.
func (e *Engine) indexBatch(ctx context.Context) (IndexReport, error) {
	var todo []searchTodo
	for _, q := range []string{
		`SELECT id, workspace_id, searched, finished_at IS NOT NULL, created_at, trigger_payload FROM runs WHERE searched < 2 AND searched = 0 LIMIT $1`,
		`SELECT id, workspace_id, searched, TRUE, created_at, '' FROM runs WHERE searched < 2 AND searched = 1 AND finished_at IS NOT NULL LIMIT $1`,
	} {
		got, err := e.searchTodo(ctx, q)
		if err != nil {
			return IndexReport{}, err
		}
		todo = append(todo, got...)
	}
	if len(todo) == 0 {
		return IndexReport{}, nil
	}
	var rep IndexReport
	err := e.db.InTx(ctx, func(tx db.Querier) error {
		taken, err := takeForIndex(ctx, tx, todo)
		if err != nil {
			return err
		}
		var finished []string
		for _, t := range taken {
			if t.finished {
				finished = append(finished, t.id)
			}
		}
		outs, err := stepOutputs(ctx, tx, finished)
		if err != nil {
			return err
		}
		var rows []valueRow
		for _, t := range taken {
			var entries [][2]string
			if t.searched == 0 {
				entries = searchEntries("trigger", []byte(t.payload))
			}
			for _, o := range outs[t.id] {
				entries = append(entries, searchEntries("steps."+o[0]+".data", []byte(o[1]))...)
			}
			for _, en := range entries {
				rows = append(rows, valueRow{t, en})
			}
		}
		rep = IndexReport{Runs: len(taken), Values: len(rows)}
		return insertValues(ctx, tx, rows)
	})
	if err != nil {
		return IndexReport{}, err
	}
	return rep, nil
}

func (e *Engine) searchTodo(ctx context.Context, q string) ([]searchTodo, error) {
	rows, err := e.db.Read().QueryContext(ctx, q, searchBatch)
	if err != nil {
		return nil, fmt.Errorf("runs to index: %w", err)
	}
	defer rows.Close()
	var out []searchTodo
	for rows.Next() {
		var t searchTodo
		if err := rows.Scan(&t.id, &t.workspaceID, &t.searched, &t.finished, &t.created, &t.payload); err != nil {
			return nil, fmt.Errorf("scan run to index: %w", err)
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// takeForIndex moves each run's index state on, one update per kind of
// move, and returns the runs it moved: a run another process moved first
// is left to it.
func takeForIndex(ctx context.Context, tx db.Querier, todo []searchTodo) ([]searchTodo, error) {
	type move struct{ from, to int }
	groups := map[move][]searchTodo{}
	for _, t := range todo {
		m := move{t.searched, 1}
		if t.finished {
			m.to = 2
		}
		groups[m] = append(groups[m], t)
	}
	var taken []searchTodo
	for m, ts := range groups {
		args := []any{m.to, m.from}
		for _, t := range ts {
			args = append(args, t.id)
		}
		rows, err := tx.QueryContext(ctx, `UPDATE runs SET searched = $1 WHERE searched = $2 AND id IN (`+placeholders(3, len(ts))+`) RETURNING id`, args...)
		if err != nil {
			return nil, fmt.Errorf("mark runs indexed: %w", err)
		}
		moved := map[string]bool{}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return nil, err
			}
			moved[id] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("mark runs indexed: %w", err)
		}
		for _, t := range ts {
			if moved[t.id] {
				taken = append(taken, t)
			}
		}
	}
	return taken, nil
}

// placeholders is "$first, …" for n parameters.
func placeholders(first, n int) string {
	var sb strings.Builder
	for i := range n {
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString("$" + strconv.Itoa(first+i))
	}
	return sb.String()
}

// stepOutputs are the outputs of the runs' completed steps, the last
// attempt of each node, by run.
func stepOutputs(ctx context.Context, tx db.Querier, runIDs []string) (map[string][][2]string, error) {
	out := map[string][][2]string{}
	if len(runIDs) == 0 {
		return out, nil
	}
	args := make([]any, len(runIDs))
	for i, id := range runIDs {
		args[i] = id
	}
	rows, err := tx.QueryContext(ctx, `SELECT run_id, node_id, output FROM run_steps WHERE run_id IN (`+placeholders(1, len(runIDs))+`)
		AND status = 'completed' AND output IS NOT NULL ORDER BY run_id, node_id, attempt`, args...)
	if err != nil {
		return nil, fmt.Errorf("step outputs to index: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var run, node string
		var output sql.NullString
		if err := rows.Scan(&run, &node, &output); err != nil {
			return nil, err
		}
		o := out[run]
		if n := len(o); n > 0 && o[n-1][0] == node {
			o[n-1][1] = output.String // a later attempt
			continue
		}
		out[run] = append(o, [2]string{node, output.String})
	}
	return out, rows.Err()
}

// valueRow is one (field, value) entry of a run.
type valueRow struct {
	run   searchTodo
	entry [2]string
}

func insertValues(ctx context.Context, tx db.Querier, rows []valueRow) error {
	const per = 500 // five parameters a row, well under both databases' limits
	for len(rows) > 0 {
		n := min(per, len(rows))
		var sb strings.Builder
		sb.WriteString(`INSERT INTO run_values (workspace_id, field, value, created_at, run_id) VALUES `)
		args := make([]any, 0, 5*n)
		for i, r := range rows[:n] {
			if i > 0 {
				sb.WriteString(",")
			}
			p := len(args)
			fmt.Fprintf(&sb, "($%d, $%d, $%d, $%d, $%d)", p+1, p+2, p+3, p+4, p+5)
			args = append(args, r.run.workspaceID, r.entry[0], r.entry[1], r.run.created, r.run.id)
		}
		if _, err := tx.ExecContext(ctx, sb.String(), args...); err != nil {
			return fmt.Errorf("index run values: %w", err)
		}
		rows = rows[n:]
	}
	return nil
}

// Unindexed counts the runs whose values are not yet searchable (what the
// runs list says when a value search may miss recent runs).
func (e *Engine) Unindexed(ctx context.Context, workspaceID string) (int, error) {
	var n int
	err := e.db.Read().QueryRowContext(ctx, `SELECT COUNT(*) FROM (SELECT 1 FROM runs WHERE searched < 2 AND searched = 0 AND workspace_id = $1 LIMIT 10001) x`,
		workspaceID).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count runs to index: %w", err)
	}
	return n, nil
}

// ListAcross is List over several workspaces (an agency's clients): each
// workspace's page along its own index, merged newest first, so the cost
// grows with the number of workspaces, not of runs. The cursor (Before)
// is a run of any of them.
func (e *Engine) ListAcross(ctx context.Context, workspaceIDs []string, f ListFilter) ([]RunRow, error) {
	if f.Limit <= 0 || f.Limit > 200 {
		f.Limit = 50
	}
	var all []RunRow
	for _, ws := range workspaceIDs {
		rows, err := e.List(ctx, ws, f)
		if err != nil {
			return nil, err
		}
		all = append(all, rows...)
	}
	sort.Slice(all, func(i, j int) bool {
		if !all[i].CreatedAt.Equal(all[j].CreatedAt) {
			return all[i].CreatedAt.After(all[j].CreatedAt)
		}
		return all[i].ID > all[j].ID
	})
	if len(all) > f.Limit {
		all = all[:f.Limit]
	}
	return all, nil
}
