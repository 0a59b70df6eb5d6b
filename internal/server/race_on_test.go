//go:build race

package server_test

// bulkBrowserRuns is how many failed runs the browser's bulk retry takes:
// fewer under the race detector, which slows each retry several times.
const bulkBrowserRuns = 2000
