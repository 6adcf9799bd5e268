// Command server is the process runtime's test workload: it listens on
// $PORT and answers with its revision and $MESSAGE, sleeps, reports the
// most concurrent requests it saw, and crashes on request.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run() error {
	port := os.Getenv("PORT")
	if port == "" {
		return errors.New("PORT is not set")
	}
	var inflight, highest atomic.Int64
	track := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			n := inflight.Add(1)
			defer inflight.Add(-1)
			for {
				m := highest.Load()
				if n <= m || highest.CompareAndSwap(m, n) {
					break
				}
			}
			h(w, r)
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", track(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "%s %s\n", os.Getenv("ELAFROS_REVISION"), os.Getenv("MESSAGE"))
	}))
	mux.HandleFunc("GET /sleep", track(func(w http.ResponseWriter, r *http.Request) {
		ms, err := strconv.Atoi(r.URL.Query().Get("ms"))
		if err != nil {
			http.Error(w, "ms: "+err.Error(), http.StatusBadRequest)
			return
		}
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
		case <-r.Context().Done():
			return
		}
		fmt.Fprintf(w, "slept %dms\n", ms)
	}))
	mux.HandleFunc("GET /concurrency", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]int64{"max": highest.Load()})
	})
	mux.HandleFunc("GET /crash", track(func(http.ResponseWriter, *http.Request) {
		fmt.Println("crashing on request")
		os.Exit(3)
	}))

	srv := &http.Server{Addr: ":" + port, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	fmt.Printf("listening on :%s\n", port)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	fmt.Println("draining")
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(shutdown)
}
