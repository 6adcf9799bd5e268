// Package rbac holds the least-privilege roles of the action, the bot and
// the bundled reconciler, embedded for installing.
package rbac

import "embed"

//go:embed *.yaml
var files embed.FS

// Manifests returns the RBAC documents: the roles first, then the
// namespace, ServiceAccounts and bindings.
func Manifests() [][]byte {
	var out [][]byte
	for _, n := range []string{"reconciler.yaml", "deployer.yaml", "rollout.yaml", "serviceaccounts.yaml"} {
		b, err := files.ReadFile(n)
		if err != nil {
			panic(err)
		}
		out = append(out, b)
	}
	return out
}
