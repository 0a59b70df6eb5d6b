package engine

// SetStartFault makes the group commit of new runs fail the write of any
// run whose fault returns an error, inside its batch; set it before starts
// begin.
func SetStartFault(e *Engine, fault func(payload string) error) {
	e.starts.fault = func(r *runStart) error { return fault(r.payload) }
}

// QueuedStarts is how many starts wait for the next group commit.
func QueuedStarts(e *Engine) int {
	e.starts.mu.Lock()
	defer e.starts.mu.Unlock()
	return len(e.starts.queue)
}

// StartsLeading says a group commit of new runs is under way.
func StartsLeading(e *Engine) bool {
	e.starts.mu.Lock()
	defer e.starts.mu.Unlock()
	return e.starts.leading
}
