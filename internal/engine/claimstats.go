package engine

import "sync/atomic"

// ClaimStats counts an engine's claims since it was made: how many claim
// statements it ran, how many of them found no due run, and how many runs
// they took in all. Processes that wake each other for every new run and
// then race for it show many empty claims per run taken (a claim storm).
type ClaimStats struct {
	Claims int64 `json:"claims"`
	Empty  int64 `json:"empty"`
	Runs   int64 `json:"runs"`
}

// claimCounter is where claim counts itself.
type claimCounter struct {
	claims, empty, runs atomic.Int64
}

func (c *claimCounter) add(runs int) {
	c.claims.Add(1)
	c.runs.Add(int64(runs))
	if runs == 0 {
		c.empty.Add(1)
	}
}

// ClaimStats reports the engine's claims so far.
func (e *Engine) ClaimStats() ClaimStats {
	return ClaimStats{Claims: e.claimCount.claims.Load(), Empty: e.claimCount.empty.Load(), Runs: e.claimCount.runs.Load()}
}
