// Command hello is the example app: a small HTTP service that greets
// $TARGET and says which revision answered. It listens on $PORT, as every
// elafros revision must, and drains in-flight requests on SIGTERM so that
// a rollout never drops one.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	srv := &http.Server{
		Addr:              ":" + port,
		Handler:           newHandler(os.Getenv),
		ReadHeaderTimeout: 10 * time.Second,
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	slog.Info("listening", "port", port)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		slog.Error("serve", "err", err)
		os.Exit(1)
	}
}

// newHandler greets $TARGET (default "world"); getenv is os.Getenv outside
// tests.
func newHandler(getenv func(string) string) http.Handler {
	target := getenv("TARGET")
	if target == "" {
		target = "world"
	}
	revision := getenv("ELAFROS_REVISION")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		if revision != "" {
			w.Header().Set("Elafros-Revision", revision)
		}
		fmt.Fprintf(w, "Hello %s!\n", target)
	})
	return mux
}
