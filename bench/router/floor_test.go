package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestFloorServersAnswerAsHello(t *testing.T) {
	for _, mode := range []string{"nethttp", "raw", "epoll"} {
		t.Run(mode, func(t *testing.T) {
			addr, err := freeAddr()
			if err != nil {
				t.Fatal(err)
			}
			go func() { _ = serveFloor(mode, addr) }()
			if err := waitListening(addr, 10*time.Second); err != nil {
				t.Fatal(err)
			}
			tr := &http.Transport{}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
			for i := range 3 { // keep-alive: the same connection answers again
				res, err := c.Get("http://" + addr + "/")
				if err != nil {
					t.Fatalf("request %d: %v", i+1, err)
				}
				body, err := io.ReadAll(res.Body)
				_ = res.Body.Close()
				if err != nil || res.StatusCode != http.StatusOK || string(body) != "Hello a!\n" {
					t.Fatalf("request %d: %d %q %v", i+1, res.StatusCode, body, err)
				}
			}
		})
	}
	if err := serveFloor("nginx", "127.0.0.1:0"); err == nil || !strings.Contains(err.Error(), "want nethttp, raw or epoll") {
		t.Errorf("an unknown mode: %v", err)
	}
}
