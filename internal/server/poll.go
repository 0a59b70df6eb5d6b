package server

import (
	"context"
	"time"

	"taskjuice/internal/api"
	"taskjuice/internal/portal"

	"taskjuice/internal/trigger"
	"taskjuice/internal/web"
	"taskjuice/internal/workflow"
)

// followPoll keeps the poller in step with what is live: a published app
// trigger is (re)registered, anything else removed.
func (s *Server) followPoll(ctx context.Context, l workflow.Live, ok bool) {
	var err error
	conn := ""
	if ok && l.Status.Dispatching() && l.Graph.Trigger != nil && l.Graph.Trigger.Kind == workflow.TriggerApp && l.Graph.Trigger.Connection != nil {
		conn = l.Graph.Trigger.Connection.ID
		if l.Graph.Trigger.Connection.ClientProvides {
			// The client's connection, once they connected it; until then
			// nothing is polled (clientConnected syncs again).
			if conn, _, err = s.opts.Workflows.ClientConnection(ctx, l.WorkflowID, l.Graph.Trigger.ID); err != nil {
				s.opts.Log.Error("sync poll trigger", "workflow", l.WorkflowID, "err", err)
				return
			}
		}
	}
	if conn != "" {
		n := *l.Graph.Trigger
		cfg, derr := workflow.DecodeConfig(n)
		if derr != nil {
			s.opts.Log.Warn("app trigger config", "workflow", l.WorkflowID, "err", derr)
			return
		}
		c := cfg.(*workflow.AppTriggerConfig)
		err = s.opts.Poller.Sync(ctx, trigger.PollTrigger{
			WorkflowID: l.WorkflowID, NodeID: n.ID, App: c.App, Trigger: c.Trigger, ConnectionID: conn,
			Inputs: c.Inputs, IncludeRecent: c.IncludeRecent, Interval: time.Duration(c.IntervalSeconds) * time.Second,
		})
	} else {
		err = s.opts.Poller.Remove(ctx, l.WorkflowID)
	}
	if err != nil {
		s.opts.Log.Error("sync poll trigger", "workflow", l.WorkflowID, "err", err)
	}
}

// pollStates gives the pages the poller's view of a workflow's trigger.
func pollStates(p *trigger.Poller) web.PollStates {
	if p == nil {
		return nil
	}
	return p
}

// triggerStates gives the API the poller's view of a workflow's trigger
// and the runs it started.
func triggerStates(p *trigger.Poller) api.TriggerStates {
	if p == nil {
		return nil
	}
	return p
}

// clientWaker is told when a client connected the connection a workflow's
// nodes wait for: runs parked at an action go on (the engine), and an app
// trigger whose client provides the connection starts polling through it.
type clientWaker struct {
	engine portal.Waker // nil without an engine
	s      *Server      // set once the server is built
}

func (c *clientWaker) ResumeClientWaits(ctx context.Context, workflowID string) (int, error) {
	n := 0
	if c.engine != nil {
		var err error
		if n, err = c.engine.ResumeClientWaits(ctx, workflowID); err != nil {
			return n, err
		}
	}
	if s := c.s; s != nil && s.opts.Poller != nil && s.opts.Workflows != nil {
		l, ok, err := s.opts.Workflows.Live(ctx, workflowID)
		if err != nil {
			return n, err
		}
		s.followPoll(ctx, l, ok)
	}
	return n, nil
}
