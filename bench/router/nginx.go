package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// nginx is one nginx serving the same two revision processes with
// weighted round-robin 3:1 over a keep-alive upstream, as the issue's
// reference setup: Debian's nginx-light, access log off.
type nginx struct {
	addr string
	dir  string
	cmd  *exec.Cmd
}

// startNginx runs bin with workers ("1" or "auto") in a directory of its
// own and waits until it listens.
func startNginx(bin, workers string, backends [2]string) (*nginx, error) {
	path, err := exec.LookPath(bin)
	if err != nil {
		return nil, fmt.Errorf("nginx not found (bench/run.sh installs Debian's nginx-light): %w", err)
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "elafros-bench-nginx-")
	if err != nil {
		return nil, err
	}
	for _, d := range []string{"logs", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	conf := fmt.Sprintf(`daemon off;
master_process on;
worker_processes %[5]s;
pid %[1]s/nginx.pid;
error_log %[1]s/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %[1]s/tmp; proxy_temp_path %[1]s/tmp; fastcgi_temp_path %[1]s/tmp; uwsgi_temp_path %[1]s/tmp; scgi_temp_path %[1]s/tmp;
  upstream revisions { server %[2]s weight=3; server %[3]s weight=1; keepalive 64; }
  server {
    listen %[4]s;
    location / { proxy_pass http://revisions; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header Host $host; }
  }
}
`, dir, backends[0], backends[1], addr, workers)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command(path, "-p", dir, "-c", confPath)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	n := &nginx{addr: addr, dir: dir, cmd: cmd}
	if err := waitListening(addr, 10*time.Second); err != nil {
		n.stop()
		return nil, fmt.Errorf("nginx (worker_processes %s) did not listen on %s; see %s: %w", workers, addr, filepath.Join(dir, "logs", "error.log"), err)
	}
	return n, nil
}

func (n *nginx) stop() {
	_ = n.cmd.Process.Signal(os.Interrupt)
	_ = n.cmd.Wait()
	_ = os.RemoveAll(n.dir)
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func waitListening(addr string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			return c.Close()
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}
