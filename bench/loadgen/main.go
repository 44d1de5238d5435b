// Command loadgen is the benchmarks' HTTP load generator and upstream service.
//
//	loadgen serve  -addr 127.0.0.1:0
//	loadgen attack -url http://127.0.0.1:PORT/ -rate 200 -duration 20s [-warmup 2s] [-conns 64]
//
// serve answers every request with a small fixed body and prints "listening HOST:PORT" on
// stdout once it accepts connections. attack is open-loop: request i is dispatched at
// start + i/rate whatever happened to earlier requests, so a slow response never delays the
// next send (no coordinated omission). Requests share a pool of keep-alive connections; each
// latency runs from just before the request is handed to the client (which includes waiting
// for a free connection) to the end of the response body, on the monotonic clock. How late
// each dispatch was against its schedule is reported separately (schedule_lag_us), so a
// generator that could not keep up is visible instead of hidden. Warm-up requests (which
// also open the connections) are sent at the same rate and discarded. The result is one JSON
// object on stdout.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/signal"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "attack":
		err = attack(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: loadgen serve -addr HOST:PORT | loadgen attack -url URL -rate N -duration D [-warmup D] [-conns N] [-timeout D]")
	os.Exit(2)
}

var body = []byte("ok\n")

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address (port 0: any free port)")
	_ = fs.Parse(args)

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "text/plain")
		h.Set("Content-Length", "3")
		_, _ = w.Write(body)
	})
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	// Printed only after Listen succeeded, so the reader may connect at once.
	fmt.Printf("listening %s\n", ln.Addr())

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		shutdown, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
		return nil
	}
}

// result is one request's outcome.
type result struct {
	latency time.Duration
	lag     time.Duration // dispatch time minus scheduled time
	err     error
}

// report is what attack prints.
type report struct {
	URL           string           `json:"url"`
	Rate          float64          `json:"rate"`
	DurationS     float64          `json:"duration_s"`
	Sent          int              `json:"sent"`
	OK            int              `json:"ok"`
	Errors        int              `json:"errors"`
	ErrorSamples  []string         `json:"error_samples"`
	AchievedRPS   float64          `json:"achieved_rps"`
	NewConns      int64            `json:"new_conns"`
	LatenciesUS   []int64          `json:"latencies_us"` // successful requests, in send order
	ScheduleLagUS map[string]int64 `json:"schedule_lag_us"`
}

func attack(args []string) error {
	fs := flag.NewFlagSet("attack", flag.ExitOnError)
	url := fs.String("url", "", "target URL")
	rate := fs.Float64("rate", 200, "requests per second")
	duration := fs.Duration("duration", 20*time.Second, "measured duration")
	warmup := fs.Duration("warmup", 2*time.Second, "unmeasured warm-up at the same rate")
	conns := fs.Int("conns", 64, "maximum keep-alive connections")
	timeout := fs.Duration("timeout", 5*time.Second, "per-request timeout")
	_ = fs.Parse(args)
	if *url == "" || *rate <= 0 || *duration <= 0 {
		return errors.New("attack needs -url, -rate > 0 and -duration > 0")
	}

	var newConns atomic.Int64
	transport := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: *timeout}).DialContext,
		MaxIdleConns:        *conns,
		MaxIdleConnsPerHost: *conns,
		MaxConnsPerHost:     *conns,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	client := &http.Client{Transport: transport, Timeout: *timeout}
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		if !info.Reused {
			newConns.Add(1)
		}
	}}

	perSecond := *rate
	interval := time.Duration(float64(time.Second) / perSecond)
	warm := int(warmup.Seconds() * perSecond)
	total := warm + int(duration.Seconds()*perSecond)
	results := make([]result, total)
	var wg sync.WaitGroup
	start := time.Now()
	var firstSend, lastSend time.Time
	for i := range total {
		due := start.Add(time.Duration(i) * interval)
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		now := time.Now()
		if i == warm {
			firstSend = now
			newConns.Store(0) // count only connections opened while measuring
		}
		lastSend = now
		wg.Add(1)
		// One goroutine per request: the schedule loop never waits for a response.
		go func(i int, lag time.Duration) {
			defer wg.Done()
			results[i] = do(client, trace, *url, lag)
		}(i, now.Sub(due))
	}
	wg.Wait()
	transport.CloseIdleConnections()

	measured := results[warm:]
	rep := report{URL: *url, Rate: *rate, DurationS: duration.Seconds(), Sent: len(measured),
		ErrorSamples: []string{}, NewConns: newConns.Load(),
		LatenciesUS: make([]int64, 0, len(measured))}
	lags := make([]int64, 0, len(measured))
	for _, r := range measured {
		lags = append(lags, r.lag.Microseconds())
		if r.err != nil {
			rep.Errors++
			if len(rep.ErrorSamples) < 5 {
				rep.ErrorSamples = append(rep.ErrorSamples, r.err.Error())
			}
			continue
		}
		rep.OK++
		rep.LatenciesUS = append(rep.LatenciesUS, r.latency.Microseconds())
	}
	if span := lastSend.Sub(firstSend).Seconds(); len(measured) > 1 && span > 0 {
		rep.AchievedRPS = float64(len(measured)-1) / span
	}
	slices.Sort(lags)
	rep.ScheduleLagUS = map[string]int64{"p50": pick(lags, 50), "p99": pick(lags, 99),
		"max": pick(lags, 100)}
	return json.NewEncoder(os.Stdout).Encode(rep)
}

// do sends one GET and reads the whole body, so the connection goes back to the pool.
func do(client *http.Client, trace *httptrace.ClientTrace, url string, lag time.Duration) result {
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace),
		http.MethodGet, url, nil)
	if err != nil {
		return result{lag: lag, err: err}
	}
	t0 := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return result{lag: lag, err: err}
	}
	_, err = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	latency := time.Since(t0) // monotonic: time.Now carries a monotonic reading
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("status %d", resp.StatusCode)
	}
	return result{latency: latency, lag: lag, err: err}
}

// pick is the nearest-rank percentile of sorted values (0 when empty).
func pick(sorted []int64, p float64) int64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := max(1, int(math.Ceil(float64(len(sorted))*p/100)))
	return sorted[min(rank, len(sorted))-1]
}
