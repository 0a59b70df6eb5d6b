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

// followPoll keeps the poller and the listener in step with what is live:
// a published app trigger is (re)registered with the one that serves it
// (the listener for an instant trigger, the poller otherwise), and removed
// from the other; anything else is removed from both. A trigger whose
// client provides the connection is registered once the client connected
// it (clientWaker syncs again then).
func (s *Server) followPoll(ctx context.Context, l workflow.Live, ok bool) {
	poll, instant, err := s.liveAppTrigger(ctx, l, ok)
	if err != nil {
		s.opts.Log.Error("sync app trigger", "workflow", l.WorkflowID, "err", err)
		return
	}
	if p := s.opts.Poller; p != nil {
		var err error
		if poll != nil {
			err = p.Sync(ctx, *poll)
		} else {
			err = p.Remove(ctx, l.WorkflowID)
		}
		if err != nil {
			s.opts.Log.Error("sync poll trigger", "workflow", l.WorkflowID, "err", err)
		}
	}
	if li := s.opts.Listener; li != nil {
		var err error
		if instant != nil {
			err = li.Sync(ctx, *instant)
		} else {
			err = li.Remove(ctx, l.WorkflowID)
		}
		if err != nil {
			s.opts.Log.Error("sync instant trigger", "workflow", l.WorkflowID, "err", err)
		}
	}
}

// liveAppTrigger is the live app trigger to register, as a poll or an
// instant trigger (both nil when there is none, or its client has not
// connected yet).
func (s *Server) liveAppTrigger(ctx context.Context, l workflow.Live, ok bool) (*trigger.PollTrigger, *trigger.InstantTrigger, error) {
	if !ok || !l.Status.Dispatching() || l.Graph.Trigger == nil || l.Graph.Trigger.Kind != workflow.TriggerApp || l.Graph.Trigger.Connection == nil {
		return nil, nil, nil
	}
	n := *l.Graph.Trigger
	conn := n.Connection.ID
	if n.Connection.ClientProvides {
		var err error
		if conn, _, err = s.opts.Workflows.ClientConnection(ctx, l.WorkflowID, n.ID); err != nil {
			return nil, nil, err
		}
	}
	if conn == "" {
		return nil, nil, nil
	}
	cfg, err := workflow.DecodeConfig(n)
	if err != nil {
		return nil, nil, err
	}
	c := cfg.(*workflow.AppTriggerConfig)
	if trigger.CanListen(c.App, c.Trigger) {
		return nil, &trigger.InstantTrigger{WorkflowID: l.WorkflowID, NodeID: n.ID, App: c.App, Trigger: c.Trigger,
			ConnectionID: conn, Inputs: c.Inputs}, nil
	}
	return &trigger.PollTrigger{
		WorkflowID: l.WorkflowID, NodeID: n.ID, App: c.App, Trigger: c.Trigger, ConnectionID: conn,
		Inputs: c.Inputs, IncludeRecent: c.IncludeRecent, Interval: time.Duration(c.IntervalSeconds) * time.Second,
	}, nil, nil
}

// pollStates gives the pages the poller's view of a workflow's trigger.
func pollStates(p *trigger.Poller) web.PollStates {
	if p == nil {
		return nil
	}
	return p
}

// instantStates gives the pages the listener's view of a workflow's
// trigger.
func instantStates(l *trigger.Listener) web.InstantStates {
	if l == nil {
		return nil
	}
	return l
}

// triggerStates gives the API the poller's view of a workflow's trigger
// and the runs it started.
func triggerStates(p *trigger.Poller) api.TriggerStates {
	if p == nil {
		return nil
	}
	return p
}

// instantTriggerStates gives the API the listener's view of a workflow's
// instant trigger and the runs it started.
func instantTriggerStates(l *trigger.Listener) api.InstantTriggerStates {
	if l == nil {
		return nil
	}
	return l
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
	if s := c.s; s != nil && (s.opts.Poller != nil || s.opts.Listener != nil) && s.opts.Workflows != nil {
		l, ok, err := s.opts.Workflows.Live(ctx, workflowID)
		if err != nil {
			return n, err
		}
		s.followPoll(ctx, l, ok)
	}
	return n, nil
}
