//go:build !race

package server_test

// bulkBrowserRuns is how many failed runs the browser's bulk retry takes.
const bulkBrowserRuns = 10000
