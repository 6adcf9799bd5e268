package router

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/elafros/elafros/internal/reconcile"
)

// TestRawServerUpgrade: a client that asks for an upgrade (a websocket,
// say) through the raw server, in both modes, gets the process's 101 and
// then a two-way byte stream with the process, as through net/http.
func TestRawServerUpgrade(t *testing.T) { forModes(t, testRawServerUpgrade) }

func testRawServerUpgrade(t *testing.T, loops int) {
	t.Parallel()
	procAddr, _ := rawProcess(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		if req.Header.Get("Upgrade") != "echo" {
			_, _ = io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		// Echo each line back in upper case until the client closes.
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if _, err := io.WriteString(c, strings.ToUpper(line)); err != nil {
				return
			}
		}
	})
	e := newEnv(t)
	e.res.set(ns, "a", Backend{Addr: procAddr})
	e.apply(reconcile.TrafficPlan{Domain: domain, Split: split("a", 100)})
	addr := serveRawLoops(t, e.rt, loops)

	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(conn, "GET /ws HTTP/1.1\r\nHost: "+domain+"\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close() // no body: a 101's stream is conn's
	if res.StatusCode != http.StatusSwitchingProtocols || res.Header.Get("Upgrade") != "echo" {
		t.Fatalf("got %s %v, want 101 with Upgrade: echo", res.Status, res.Header)
	}
	if got := res.Header.Get(RevisionHeader); got != "a" {
		t.Errorf("%s: %q, want a", RevisionHeader, got)
	}
	for _, msg := range []string{"hello\n", "two-way\n", strings.Repeat("x", 70000) + "\n"} {
		if _, err := io.WriteString(conn, msg); err != nil {
			t.Fatal(err)
		}
		got, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("after %d bytes: %v", len(got), err)
		}
		if got != strings.ToUpper(msg) {
			t.Fatalf("got %d bytes %.20q..., want %.20q...", len(got), got, strings.ToUpper(msg))
		}
	}
}
