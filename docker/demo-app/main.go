// demo-app: a tiny HTTP service to practise chaos experiments on (stdlib only, static).
//
//	/         200 "ok <hostname>"
//	/healthz  200 (liveness)
//	/ready    200, or 503 once SIGTERM has arrived (readiness)
//
// Env: PORT (default 8080), SHUTDOWN_DELAY (Go duration, default 2s: how long it keeps
// serving after SIGTERM, with /ready answering 503), DEMO_EVENTS_DIR (if set, a SIGTERM line
// and an EXIT line are appended to $DEMO_EVENTS_DIR/events.log, each synced to disk at once,
// so a test can tell when the signal arrived and whether the grace period was honoured).
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	os.Exit(run())
}

func run() int {
	// First, so that a SIGTERM during start-up is not lost (or fatal).
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)

	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	delay := 2 * time.Second
	if s := os.Getenv("SHUTDOWN_DELAY"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			fmt.Fprintf(os.Stderr, "demo-app: bad SHUTDOWN_DELAY %q: want a Go duration such as 2s\n", s)
			return 2
		}
		delay = d
	}
	host, err := os.Hostname()
	if err != nil {
		host = "unknown"
	}
	eventsDir := os.Getenv("DEMO_EVENTS_DIR")

	var shuttingDown atomic.Bool
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintf(w, "ok %s\n", host)
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/ready", func(w http.ResponseWriter, _ *http.Request) {
		if shuttingDown.Load() {
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})

	// Bind first: once "listening" is printed, connections are accepted.
	ln, err := net.Listen("tcp", ":"+port)
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo-app: %v\n", err)
		return 1
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Printf("demo-app: listening on :%s\n", port)

	select {
	case err := <-served:
		fmt.Fprintf(os.Stderr, "demo-app: %v\n", err)
		return 1
	case sig := <-sigs:
		shuttingDown.Store(true)
		if sig == syscall.SIGTERM {
			fmt.Println("demo-app: SIGTERM received")
			event(eventsDir, fmt.Sprintf("SIGTERM %s pid=%d", host, os.Getpid()))
		} else {
			fmt.Printf("demo-app: %v received\n", sig)
		}
	}

	// Keep serving for the delay (a second signal cuts it short), then stop cleanly.
	select {
	case <-time.After(delay):
	case <-sigs:
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		fmt.Fprintf(os.Stderr, "demo-app: shutdown: %v\n", err)
	}
	event(eventsDir, "EXIT "+host)
	fmt.Println("demo-app: exiting")
	return 0
}

// event appends "<RFC3339Nano UTC time> <what>" to dir/events.log and syncs it; errors are
// reported on stderr and otherwise ignored (the app must still shut down).
func event(dir, what string) {
	if dir == "" {
		return
	}
	f, err := os.OpenFile(filepath.Join(dir, "events.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo-app: events: %v\n", err)
		return
	}
	defer f.Close()
	line := time.Now().UTC().Format(time.RFC3339Nano) + " " + what + "\n"
	if _, err := f.WriteString(line); err != nil {
		fmt.Fprintf(os.Stderr, "demo-app: events: %v\n", err)
		return
	}
	if err := f.Sync(); err != nil {
		fmt.Fprintf(os.Stderr, "demo-app: events: %v\n", err)
	}
}
