package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"time"
)

// The floor: what answering a request costs a Go process on this
// machine, without proxying anything. "go net/http" is a net/http server
// with a handler that writes a fixed body; "go raw loop" reads requests up
// to their blank line and writes a fixed response, one goroutine per
// connection, without net/http; "go epoll loop" does the same from one
// edge-triggered epoll loop (the router's event loop's way). None is a
// proxy: a proxy pays at least this on its client side, and as much
// again towards the process.

// floorResponse is what examples/hello answers, byte for byte in length.
const floorResponse = "HTTP/1.1 200 OK\r\nContent-Length: 9\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello a!\n"

// serveFloor is the re-executed benchmark binary's server (-floor-server
// MODE -floor-addr ADDR).
func serveFloor(mode, addr string) error {
	if mode != "nethttp" && mode != "raw" && mode != "epoll" {
		return fmt.Errorf("-floor-server %q: want nethttp, raw or epoll", mode)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	switch mode {
	case "epoll":
		return serveEpollFloor(l)
	case "nethttp":
		body := []byte("Hello a!\n")
		srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write(body)
		})}
		return srv.Serve(l)
	case "raw":
		for {
			c, err := l.Accept()
			if err != nil {
				return err
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					for {
						line, err := br.ReadSlice('\n')
						if err != nil {
							return
						}
						if len(line) <= 2 { // the blank line ending a body-less request
							break
						}
					}
					if _, err := io.WriteString(c, floorResponse); err != nil {
						return
					}
				}
			}()
		}
	}
	panic("unreachable: mode was checked")
}

// startFloor runs this binary again as a floor server.
func startFloor(mode string) (addr string, cmd *exec.Cmd, err error) {
	self, err := os.Executable()
	if err != nil {
		return "", nil, err
	}
	if addr, err = freeAddr(); err != nil {
		return "", nil, err
	}
	cmd = exec.Command(self, "-floor-server", mode, "-floor-addr", addr)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	if err := waitListening(addr, 10*time.Second); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return "", nil, fmt.Errorf("floor server %s: %w", mode, err)
	}
	return addr, cmd, nil
}
