package trigger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

func init() {
	pollSources[[2]string{"gmail", "new-email"}] = gmailMessages{}
}

// gmailMessages is Gmail's "New email": the mailbox history read after a
// historyId (users.history.list, messageAdded, INBOX). The cursor also
// keeps the time (the app's Date) it was taken at and, between pages, the
// history page token: when Gmail no longer has the history from that id
// (HTTP 404), the poll falls back to a bounded search of the messages
// received since then and starts again from a fresh historyId.
//
// With a search query, the added messages are kept only when Gmail's own
// search (users.messages.list?q=) finds them among the messages of the
// same period, so the query means exactly what it means in Gmail.
type gmailMessages struct{}

const (
	gmailBase = "https://gmail.googleapis.com/gmail/v1/users/me/"
	// gmailSearchPages bounds a search (the fallback, the query filter)
	// at this many pages of gmailSearchSize.
	gmailSearchPages = 5
	gmailSearchSize  = 100
	// gmailSlack widens "after:" so a message stamped a little before the
	// cursor's time (clock skew, delivery delays) is still seen.
	gmailSlack = 10 * time.Minute
)

type gmailCursor struct {
	HistoryID string `json:"h"`
	// Unix is when the history id was read, by Gmail's clock.
	Unix int64 `json:"t"`
	// Page is the history page token to resume with.
	Page string `json:"p,omitempty"`
}

func (c gmailCursor) String() string {
	b, _ := json.Marshal(c)
	return string(b)
}

func parseGmailCursor(s string) (gmailCursor, error) {
	var c gmailCursor
	if err := json.Unmarshal([]byte(s), &c); err != nil || c.HistoryID == "" {
		return gmailCursor{}, fmt.Errorf("the trigger's saved position %q is not a Gmail one", s)
	}
	return c, nil
}

type gmailList struct {
	Messages []struct {
		ID       string `json:"id"`
		ThreadID string `json:"threadId"`
	} `json:"messages"`
	NextPageToken      string `json:"nextPageToken"`
	ResultSizeEstimate int    `json:"resultSizeEstimate"`
}

type gmailHistory struct {
	History []struct {
		ID            string `json:"id"`
		MessagesAdded []struct {
			Message struct {
				ID       string   `json:"id"`
				ThreadID string   `json:"threadId"`
				LabelIDs []string `json:"labelIds"`
			} `json:"message"`
		} `json:"messagesAdded"`
	} `json:"history"`
	NextPageToken string `json:"nextPageToken"`
	HistoryID     string `json:"historyId"`
}

type gmailMessage struct {
	ID           string   `json:"id"`
	ThreadID     string   `json:"threadId"`
	LabelIDs     []string `json:"labelIds"`
	Snippet      string   `json:"snippet"`
	HistoryID    string   `json:"historyId"`
	InternalDate string   `json:"internalDate"`
	SizeEstimate int      `json:"sizeEstimate"`
	Payload      struct {
		Headers []struct {
			Name  string `json:"name"`
			Value string `json:"value"`
		} `json:"headers"`
	} `json:"payload"`
}

func (gmailMessages) base(c pollCall) string {
	if a, ok := c.app.Action("send-email"); ok {
		if i := strings.Index(a.URL, "/messages/"); i > 0 {
			return a.URL[:i] + "/"
		}
	}
	return gmailBase
}

func (s gmailMessages) profile(ctx context.Context, c pollCall) (gmailCursor, error) {
	var p struct {
		EmailAddress string `json:"emailAddress"`
		HistoryID    string `json:"historyId"`
	}
	h, err := c.fetch(ctx, http.MethodGet, s.base(c)+"profile", nil, &p)
	if err != nil {
		return gmailCursor{}, err
	}
	if p.HistoryID == "" {
		return gmailCursor{}, errors.New("Gmail answered a profile without a historyId")
	}
	return gmailCursor{HistoryID: p.HistoryID, Unix: answerTime(h, time.Now).Unix()}, nil
}

// search lists the ids of the messages Gmail's search q finds, newest
// first, up to limit.
func (s gmailMessages) search(ctx context.Context, c pollCall, q string, limit int) ([]string, error) {
	var ids []string
	token := ""
	for range gmailSearchPages {
		v := url.Values{"maxResults": {strconv.Itoa(min(limit-len(ids), gmailSearchSize))}}
		if q != "" {
			v.Set("q", q)
		}
		if token != "" {
			v.Set("pageToken", token)
		}
		var l gmailList
		if _, err := c.fetch(ctx, http.MethodGet, s.base(c)+"messages?"+v.Encode(), nil, &l); err != nil {
			return nil, err
		}
		for _, m := range l.Messages {
			ids = append(ids, m.ID)
		}
		token = l.NextPageToken
		if token == "" || len(ids) >= limit {
			break
		}
	}
	return ids, nil
}

// get reads one message's metadata as the run's payload; found is false
// when the message is gone (deleted since it arrived).
func (s gmailMessages) get(ctx context.Context, c pollCall, id string) (json.RawMessage, bool, error) {
	v := url.Values{"format": {"metadata"}, "metadataHeaders": {"From", "To", "Cc", "Subject", "Date"}}
	var m gmailMessage
	if _, err := c.fetch(ctx, http.MethodGet, s.base(c)+"messages/"+url.PathEscape(id)+"?"+v.Encode(), nil, &m); err != nil {
		if refusedStatus(err) == http.StatusNotFound {
			return nil, false, nil
		}
		return nil, false, err
	}
	out := map[string]any{
		"id": m.ID, "threadId": m.ThreadID, "labelIds": m.LabelIDs, "snippet": m.Snippet,
		"internalDate": m.InternalDate, "historyId": m.HistoryID,
		"from": "", "to": "", "cc": "", "subject": "", "date": "",
	}
	for _, h := range m.Payload.Headers {
		switch k := strings.ToLower(h.Name); k {
		case "from", "to", "cc", "subject", "date":
			out[k] = h.Value
		}
	}
	b, err := json.Marshal(out)
	return b, true, err
}

// items reads the messages by id (in the given order) with cursor as
// each one's resume point.
func (s gmailMessages) items(ctx context.Context, c pollCall, ids []string, cursor string) ([]Item, error) {
	var out []Item
	for _, id := range ids {
		payload, ok, err := s.get(ctx, c, id)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, Item{ID: id, Payload: payload, Cursor: cursor})
		}
	}
	return out, nil
}

func (s gmailMessages) query(c pollCall) string { return strings.TrimSpace(c.inputs["query"]) }

// since is the search "after:" clause for the messages received since a
// cursor was taken, with slack.
func since(cur gmailCursor) string {
	return "after:" + strconv.FormatInt(time.Unix(cur.Unix, 0).Add(-gmailSlack).Unix(), 10)
}

func (s gmailMessages) latest(ctx context.Context, c pollCall, n int) ([]Item, string, error) {
	// The history id first: anything arriving after it comes with the
	// next poll, even if the search below sees it too (a run starts once).
	cur, err := s.profile(ctx, c)
	if err != nil {
		return nil, "", err
	}
	if n <= 0 {
		return nil, cur.String(), nil
	}
	q := "in:inbox"
	if uq := s.query(c); uq != "" {
		q = "in:inbox (" + uq + ")"
	}
	ids, err := s.search(ctx, c, q, n)
	if err != nil {
		return nil, "", err
	}
	slices.Reverse(ids)
	items, err := s.items(ctx, c, ids, cur.String())
	if err != nil {
		return nil, "", err
	}
	return items, cur.String(), nil
}

func (s gmailMessages) after(ctx context.Context, c pollCall, cursor string) ([]Item, string, bool, error) {
	cur, err := parseGmailCursor(cursor)
	if err != nil {
		return nil, "", false, err
	}
	v := url.Values{"startHistoryId": {cur.HistoryID}, "historyTypes": {"messageAdded"}, "labelId": {"INBOX"}, "maxResults": {"100"}}
	if cur.Page != "" {
		v.Set("pageToken", cur.Page)
	}
	var h gmailHistory
	hdr, err := c.fetch(ctx, http.MethodGet, s.base(c)+"history?"+v.Encode(), nil, &h)
	if refusedStatus(err) == http.StatusNotFound {
		return s.fallback(ctx, c, cur)
	}
	if err != nil {
		return nil, "", false, err
	}
	var ids []string
	for _, rec := range h.History {
		for _, a := range rec.MessagesAdded {
			if a.Message.ID != "" && !slices.Contains(ids, a.Message.ID) {
				ids = append(ids, a.Message.ID)
			}
		}
	}
	if q := s.query(c); q != "" && len(ids) > 0 {
		match, err := s.search(ctx, c, "("+q+") "+since(cur), gmailSearchPages*gmailSearchSize)
		if err != nil {
			return nil, "", false, err
		}
		ids = slices.DeleteFunc(ids, func(id string) bool { return !slices.Contains(match, id) })
	}
	// A page's items resume from the page they came with: a partly
	// recorded page is read again, and its recorded runs are not repeated.
	items, err := s.items(ctx, c, ids, cursor)
	if err != nil {
		return nil, "", false, err
	}
	if h.NextPageToken != "" {
		next := gmailCursor{HistoryID: cur.HistoryID, Unix: cur.Unix, Page: h.NextPageToken}
		return items, next.String(), true, nil
	}
	next := gmailCursor{HistoryID: cur.HistoryID, Unix: answerTime(hdr, time.Now).Unix()}
	if h.HistoryID != "" {
		next.HistoryID = h.HistoryID
	}
	return items, next.String(), false, nil
}

// fallback is the poll after Gmail forgot the history from the cursor:
// a fresh history id first, then the inbox messages received since the
// cursor was taken (bounded), oldest first.
func (s gmailMessages) fallback(ctx context.Context, c pollCall, cur gmailCursor) ([]Item, string, bool, error) {
	fresh, err := s.profile(ctx, c)
	if err != nil {
		return nil, "", false, err
	}
	q := "in:inbox " + since(cur)
	if uq := s.query(c); uq != "" {
		q = "in:inbox (" + uq + ") " + since(cur)
	}
	ids, err := s.search(ctx, c, q, gmailSearchPages*gmailSearchSize)
	if err != nil {
		return nil, "", false, err
	}
	slices.Reverse(ids)
	items, err := s.items(ctx, c, ids, cur.String())
	if err != nil {
		return nil, "", false, err
	}
	return items, fresh.String(), false, nil
}
