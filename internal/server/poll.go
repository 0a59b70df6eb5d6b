package server

import (
	"context"
	"time"

	"taskjuice/internal/trigger"
	"taskjuice/internal/web"
	"taskjuice/internal/workflow"
)

// followPoll keeps the poller and the listener in step with what is live:
// a published app trigger is (re)registered with the one that serves it
// (the listener for an instant trigger, the poller otherwise), and removed
// from the other; anything else is removed from both.
func (s *Server) followPoll(ctx context.Context, l workflow.Live, ok bool) {
	var poll *trigger.PollTrigger
	var instant *trigger.InstantTrigger
	if ok && l.Status.Dispatching() && l.Graph.Trigger != nil && l.Graph.Trigger.Kind == workflow.TriggerApp && l.Graph.Trigger.Connection != nil {
		n := *l.Graph.Trigger
		cfg, derr := workflow.DecodeConfig(n)
		if derr != nil {
			s.opts.Log.Warn("app trigger config", "workflow", l.WorkflowID, "err", derr)
			return
		}
		c := cfg.(*workflow.AppTriggerConfig)
		if trigger.CanListen(c.App, c.Trigger) {
			instant = &trigger.InstantTrigger{WorkflowID: l.WorkflowID, NodeID: n.ID, App: c.App, Trigger: c.Trigger,
				ConnectionID: n.Connection.ID, Inputs: c.Inputs}
		} else {
			poll = &trigger.PollTrigger{
				WorkflowID: l.WorkflowID, NodeID: n.ID, App: c.App, Trigger: c.Trigger, ConnectionID: n.Connection.ID,
				Inputs: c.Inputs, IncludeRecent: c.IncludeRecent, Interval: time.Duration(c.IntervalSeconds) * time.Second,
			}
		}
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
