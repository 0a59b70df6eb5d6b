package server_test

import (
	"encoding/json"
	"strings"
	"testing"
)

type clientRequestsBody struct {
	Queued []struct{ ID, App, NodeID string }
	Sent   []struct {
		ID               string
		Connected, Total int
		Requests         []struct{ App string }
	}
}

func (b *browser) clientRequests(t *testing.T) clientRequestsBody {
	t.Helper()
	res := b.api("GET", "/api/v1/workspaces/acme/client-requests", "")
	wantStatus(t, "list client requests", res, 200)
	var out clientRequestsBody
	must(t, json.Unmarshal([]byte(res.Body), &out))
	return out
}

// The client-request queue through the API, as the page has it: queue a
// client-provided step's app (twice is one request), take one off, send
// the queue as one email and follow its progress; bad input is refused
// with a message, and another account sees nothing.
func TestClientRequestsAPI(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		box := e.mailbox()
		owner := e.signIn("owner@a.example")
		w := e.clientWorkflow(t, e.acme, "Lead alerts", map[string]string{"post": "sandbox-chat", "read": "sandbox-inbox"})
		const path = "/api/v1/workspaces/acme/client-requests"

		for _, node := range []string{"post", "read", "post"} {
			res := owner.api("POST", path, `{"workflowId":"`+w.ID+`","nodeId":"`+node+`"}`)
			wantStatus(t, "queue "+node, res, 201)
		}
		got := owner.clientRequests(t)
		if len(got.Queued) != 2 || len(got.Sent) != 0 {
			t.Fatalf("after queuing: %+v, want two queued", got)
		}
		for what, body := range map[string]string{
			"a step whose client provides nothing": `{"workflowId":"` + w.ID + `","nodeId":"start"}`,
			"no such step":                         `{"workflowId":"` + w.ID + `","nodeId":"nope"}`,
			"no such workflow":                     `{"workflowId":"nope","nodeId":"post"}`,
			"not JSON":                             `{"workflowId":`,
		} {
			res := owner.api("POST", path, body)
			if res.StatusCode < 400 || res.StatusCode >= 500 || !strings.Contains(res.Body, `"message"`) {
				t.Errorf("%s: %d %.200s, want a 4xx with a message", what, res.StatusCode, res.Body)
			}
		}
		if n := len(owner.clientRequests(t).Queued); n != 2 {
			t.Fatalf("refused requests changed the queue: %d queued", n)
		}

		var read string
		for _, q := range got.Queued {
			if q.NodeID == "read" {
				read = q.ID
			}
		}
		ownerB := e.signIn("owner@b.example")
		wantStatus(t, "another account lists", ownerB.api("GET", path, ""), 404)
		wantStatus(t, "another account takes one off", ownerB.api("DELETE", path+"/"+read, ""), 404)
		wantStatus(t, "another account sends", ownerB.api("POST", path+"/send", `{}`), 404)
		wantStatus(t, "take one off", owner.api("DELETE", path+"/"+read, ""), 204)
		wantStatus(t, "take it off again", owner.api("DELETE", path+"/"+read, ""), 404)

		res := owner.api("POST", path+"/send", `{"note":"Please connect this one."}`)
		wantStatus(t, "send", res, 201)
		if strings.Contains(res.Body, `"link"`) {
			t.Fatalf("with email on, the send returned a link: %.300s", res.Body)
		}
		if mails := box.deliver(t); len(mails) != 1 || !strings.Contains(mails[0].Text, "Please connect this one.") {
			t.Fatalf("sent %d emails, want one with the note", len(mails))
		}
		got = owner.clientRequests(t)
		if len(got.Queued) != 0 || len(got.Sent) != 1 || got.Sent[0].Total != 1 || got.Sent[0].Connected != 0 || got.Sent[0].Requests[0].App != "sandbox-chat" {
			t.Fatalf("after sending: %+v", got)
		}
		wantStatus(t, "send an empty queue", owner.api("POST", path+"/send", `{}`), 409)
	})
}

// With email off, sending returns the client's sign-in link, once.
func TestClientRequestsAPIEmailOff(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		owner := e.signIn("owner@a.example")
		w := e.clientWorkflow(t, e.acme, "Lead alerts", map[string]string{"post": "sandbox-chat"})
		const path = "/api/v1/workspaces/acme/client-requests"
		wantStatus(t, "queue", owner.api("POST", path, `{"workflowId":"`+w.ID+`","nodeId":"post"}`), 201)
		res := owner.api("POST", path+"/send", `{}`)
		wantStatus(t, "send", res, 201)
		var sent struct{ Link string }
		must(t, json.Unmarshal([]byte(res.Body), &sent))
		if !strings.HasPrefix(sent.Link, e.srv.URL+"/portal/link/tjl_") {
			t.Fatalf("send with email off: link %q", sent.Link)
		}
		if strings.Contains(owner.get("/acme/clients/requests").Body, sent.Link) {
			t.Fatal("the link is shown again on the requests page")
		}
	})
}
