package trigger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

func init() {
	pollSources[[2]string{"hubspot", "new-contact"}] = hubspotContacts{}
}

// hubspotContacts is HubSpot's "New contact": the CRM search API
// (POST /crm/v3/objects/contacts/search) read by createdate, ascending.
// The cursor is "<createdate ms>:<ids>", the ids being the contacts seen
// that were created in that very millisecond: the search asks for
// createdate >= the millisecond and skips those ids, so contacts created in
// the same millisecond are neither lost nor repeated across pages. Paging
// moves the cursor itself (keyset) instead of the search's "after", which
// HubSpot caps at 10,000 results.
type hubspotContacts struct{}

const (
	hubspotSearchURL = "https://api.hubapi.com/crm/v3/objects/contacts/search"
	hubspotPageSize  = 100
)

type hubspotSearch struct {
	FilterGroups []hubspotFilterGroup `json:"filterGroups"`
	Sorts        []hubspotSort        `json:"sorts"`
	Properties   []string             `json:"properties"`
	Limit        int                  `json:"limit"`
	After        string               `json:"after,omitempty"`
}

type hubspotFilterGroup struct {
	Filters []hubspotFilter `json:"filters"`
}

type hubspotFilter struct {
	PropertyName string `json:"propertyName"`
	Operator     string `json:"operator"`
	Value        string `json:"value"`
}

type hubspotSort struct {
	PropertyName string `json:"propertyName"`
	Direction    string `json:"direction"`
}

type hubspotResults struct {
	Total   int              `json:"total"`
	Results []hubspotContact `json:"results"`
	Paging  *struct {
		Next *struct {
			After string `json:"after"`
		} `json:"next"`
	} `json:"paging"`
}

type hubspotContact struct {
	ID         string         `json:"id"`
	Properties map[string]any `json:"properties"`
	CreatedAt  string         `json:"createdAt"`
	UpdatedAt  string         `json:"updatedAt"`
	Archived   bool           `json:"archived"`
}

var hubspotProperties = []string{"email", "firstname", "lastname", "createdate"}

type hubspotCursor struct {
	ms  int64
	ids []string
}

func parseHubspotCursor(s string) (hubspotCursor, error) {
	if s == "" {
		return hubspotCursor{}, nil
	}
	msPart, idPart, _ := strings.Cut(s, ":")
	ms, err := strconv.ParseInt(msPart, 10, 64)
	if err != nil {
		return hubspotCursor{}, fmt.Errorf("the trigger's saved position %q is not a HubSpot one", s)
	}
	c := hubspotCursor{ms: ms}
	if idPart != "" {
		c.ids = strings.Split(idPart, ",")
	}
	return c, nil
}

func (c hubspotCursor) String() string {
	return strconv.FormatInt(c.ms, 10) + ":" + strings.Join(c.ids, ",")
}

// past moves the cursor past a contact created at ms.
func (c hubspotCursor) past(ms int64, id string) hubspotCursor {
	if ms != c.ms {
		return hubspotCursor{ms: ms, ids: []string{id}}
	}
	return hubspotCursor{ms: ms, ids: append(slices.Clone(c.ids), id)}
}

func (hubspotContacts) url(c pollCall) string {
	if a, ok := c.app.Action("create-contact"); ok {
		if i := strings.Index(a.URL, "/crm/"); i > 0 {
			return a.URL[:i] + "/crm/v3/objects/contacts/search"
		}
	}
	return hubspotSearchURL
}

// contactMillis reads a contact's createdate: HubSpot answers an ISO 8601
// time (and millisecond strings in older portals).
func contactMillis(props map[string]any, createdAt string) (int64, bool) {
	v, _ := props["createdate"].(string)
	if v == "" {
		v = createdAt
	}
	if ms, err := strconv.ParseInt(v, 10, 64); err == nil {
		return ms, true
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t.UnixMilli(), true
	}
	return 0, false
}

func (s hubspotContacts) search(ctx context.Context, c pollCall, body hubspotSearch) (hubspotResults, error) {
	var r hubspotResults
	_, err := c.fetch(ctx, "POST", s.url(c), body, &r)
	return r, err
}

func (s hubspotContacts) items(r hubspotResults, cur hubspotCursor) ([]Item, hubspotCursor, error) {
	var out []Item
	for _, res := range r.Results {
		if res.ID == "" {
			return nil, cur, errors.New("HubSpot answered a contact without an id")
		}
		ms, ok := contactMillis(res.Properties, res.CreatedAt)
		if !ok {
			return nil, cur, fmt.Errorf("HubSpot answered contact %s without a creation date", res.ID)
		}
		if ms < cur.ms || (ms == cur.ms && slices.Contains(cur.ids, res.ID)) {
			continue
		}
		payload, err := json.Marshal(map[string]any{
			"id": res.ID, "properties": res.Properties, "createdAt": res.CreatedAt,
			"updatedAt": res.UpdatedAt, "archived": res.Archived,
		})
		if err != nil {
			return nil, cur, err
		}
		cur = cur.past(ms, res.ID)
		out = append(out, Item{ID: res.ID, Payload: payload, Cursor: cur.String()})
	}
	return out, cur, nil
}

func (s hubspotContacts) latest(ctx context.Context, c pollCall, n int) ([]Item, string, error) {
	// The newest contacts, newest first: the first is where HubSpot stands.
	r, err := s.search(ctx, c, hubspotSearch{
		FilterGroups: []hubspotFilterGroup{},
		Sorts:        []hubspotSort{{PropertyName: "createdate", Direction: "DESCENDING"}},
		Properties:   hubspotProperties,
		Limit:        max(min(n, hubspotPageSize), 1),
	})
	if err != nil {
		return nil, "", err
	}
	slices.Reverse(r.Results)
	items, cur, err := s.items(r, hubspotCursor{ms: -1})
	if err != nil {
		return nil, "", err
	}
	if len(items) == 0 {
		// An empty CRM: every contact to come is new.
		return nil, "0:", nil
	}
	// Other contacts of the newest millisecond are seen too, not new.
	same, err := s.search(ctx, c, hubspotSearch{
		FilterGroups: []hubspotFilterGroup{{Filters: []hubspotFilter{{PropertyName: "createdate", Operator: "GTE", Value: strconv.FormatInt(cur.ms, 10)}}}},
		Sorts:        []hubspotSort{{PropertyName: "createdate", Direction: "ASCENDING"}},
		Properties:   hubspotProperties,
		Limit:        hubspotPageSize,
	})
	if err != nil {
		return nil, "", err
	}
	same.Results = slices.DeleteFunc(same.Results, func(r hubspotContact) bool {
		ms, ok := contactMillis(r.Properties, r.CreatedAt)
		return !ok || ms != cur.ms
	})
	if _, all, err := s.items(same, hubspotCursor{ms: cur.ms}); err == nil && len(all.ids) > 0 {
		cur = hubspotCursor{ms: cur.ms, ids: all.ids}
	}
	if n <= 0 {
		items = nil
	}
	return items, cur.String(), nil
}

func (s hubspotContacts) after(ctx context.Context, c pollCall, cursor string) ([]Item, string, bool, error) {
	cur, err := parseHubspotCursor(cursor)
	if err != nil {
		return nil, "", false, err
	}
	q := hubspotSearch{
		FilterGroups: []hubspotFilterGroup{{Filters: []hubspotFilter{{PropertyName: "createdate", Operator: "GTE", Value: strconv.FormatInt(cur.ms, 10)}}}},
		Sorts:        []hubspotSort{{PropertyName: "createdate", Direction: "ASCENDING"}},
		Properties:   hubspotProperties,
		Limit:        hubspotPageSize,
	}
	for {
		r, err := s.search(ctx, c, q)
		if err != nil {
			return nil, "", false, err
		}
		items, next, err := s.items(r, cur)
		if err != nil {
			return nil, "", false, err
		}
		hasNext := r.Paging != nil && r.Paging.Next != nil && r.Paging.Next.After != ""
		if len(items) == 0 && len(r.Results) == hubspotPageSize && hasNext {
			// A full page of contacts already seen, all created in the
			// cursor's millisecond: more were created in it than a page
			// holds, so read on with the search's own paging.
			q.After = r.Paging.Next.After
			continue
		}
		more := len(items) > 0 && (len(r.Results) == hubspotPageSize || hasNext)
		return items, next.String(), more, nil
	}
}
