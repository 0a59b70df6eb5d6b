// Command taskjuice is the whole product in one binary: the server and its
// workers (serve), schema migrations (migrate) and admin commands.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}); err != nil {
		fmt.Fprintln(os.Stderr, "taskjuice:", err)
		os.Exit(1)
	}
}

// env is the process's outside world, passed in so commands can be tested.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
}
