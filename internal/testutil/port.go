package testutil

import (
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
)

// FreePort is a loopback port for a process the test starts, free when
// checked. It is picked below the kernel's ephemeral range, from which
// every Listen("127.0.0.1:0") and outgoing connection takes its port: a
// port picked from that range (the usual Listen(":0") and Close) could be
// taken by one of those between this check and the process's bind, which
// then fails with "address already in use" while another server answers
// on the port.
func FreePort(t testing.TB) int {
	t.Helper()
	lo, hi := 20000, belowEphemeral()
	for range 200 {
		p := lo + rand.IntN(hi-lo)
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err == nil {
			_ = l.Close()
			return p
		}
	}
	t.Fatalf("no free port in [%d, %d) after 200 tries", lo, hi)
	return 0
}

// belowEphemeral is the first port of the ephemeral range (Linux's
// ip_local_port_range, 32768 by default), or 32768 where it cannot be read
// or leaves too little room below it.
func belowEphemeral() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 32768
	}
	n, err := strconv.Atoi(f[0])
	if err != nil || n < 21000 {
		return 32768
	}
	return n
}
