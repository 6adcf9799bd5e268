package cluster

import (
	_ "embed"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

//go:embed versions.env
var versionsEnv string

// Versions are the pins of versions.env, by variable name.
var Versions = parse(versionsEnv)

// parse reads KEY=VALUE lines, skipping comments and blank lines. The file
// is the project's own: a malformed line is a programming error.
func parse(s string) map[string]string {
	out := map[string]string{}
	for i, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || k == "" || v == "" {
			panic(fmt.Sprintf("hack/cluster/versions.env:%d: want KEY=VALUE, got %q", i+1, line))
		}
		out[k] = v
	}
	return out
}

func pin(name string) string {
	v, ok := Versions[name]
	if !ok {
		panic("hack/cluster/versions.env has no " + name)
	}
	return v
}

// CacheName is the directory, under the cache, that build.sh fills for
// these versions.
func CacheName() string {
	return fmt.Sprintf("r%s-k8s-%s-etcd-%s-kwok-%s-gwapi-%s",
		pin("RECIPE"), pin("K8S_VERSION"), pin("ETCD_VERSION"), pin("KWOK_VERSION"), pin("GATEWAY_API_VERSION"))
}

// BinDir is where build.sh puts the binaries: $ELAFROS_CLUSTER_CACHE, or
// $XDG_CACHE_HOME/elafros/cluster, or ~/.cache/elafros/cluster, then
// CacheName.
func BinDir() string {
	if d := os.Getenv("ELAFROS_CLUSTER_CACHE"); d != "" {
		return filepath.Join(d, CacheName())
	}
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil || home == "" {
			home = "/tmp" // as build.sh does without $HOME
		}
		base = filepath.Join(home, ".cache")
	}
	return filepath.Join(base, "elafros", "cluster", CacheName())
}
