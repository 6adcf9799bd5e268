// Package registryhost says how to reach an OCI registry host.
package registryhost

import (
	"net"
	"strings"
)

// Loopback reports a registry host (with an optional port) on loopback:
// localhost, 127.0.0.0/8 or [::1]. Those are reached over plain HTTP.
func Loopback(registry string) bool {
	host := registry
	if h, _, err := net.SplitHostPort(registry); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
