package registryhost

import "testing"

func TestLoopback(t *testing.T) {
	for reg, want := range map[string]bool{
		"127.0.0.1:5000": true,
		"localhost":      true,
		"localhost:5000": true,
		"[::1]:5000":     true,
		"gcr.io":         false,
		"10.0.0.1:5000":  false,
	} {
		if got := Loopback(reg); got != want {
			t.Errorf("Loopback(%q) = %v, want %v", reg, got, want)
		}
	}
}
