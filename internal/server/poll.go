package server

import (
	"context"
	"time"

	"taskjuice/internal/api"

	"taskjuice/internal/trigger"
	"taskjuice/internal/web"
	"taskjuice/internal/workflow"
)

// followPoll keeps the poller in step with what is live: a published app
// trigger is (re)registered, anything else removed.
func (s *Server) followPoll(ctx context.Context, l workflow.Live, ok bool) {
	var err error
	if ok && l.Status.Dispatching() && l.Graph.Trigger != nil && l.Graph.Trigger.Kind == workflow.TriggerApp && l.Graph.Trigger.Connection != nil {
		n := *l.Graph.Trigger
		cfg, derr := workflow.DecodeConfig(n)
		if derr != nil {
			s.opts.Log.Warn("app trigger config", "workflow", l.WorkflowID, "err", derr)
			return
		}
		c := cfg.(*workflow.AppTriggerConfig)
		err = s.opts.Poller.Sync(ctx, trigger.PollTrigger{
			WorkflowID: l.WorkflowID, NodeID: n.ID, App: c.App, Trigger: c.Trigger, ConnectionID: n.Connection.ID,
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
