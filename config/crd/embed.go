// Package crd holds the CustomResourceDefinitions generated from
// api/v1alpha1 by controller-gen (bases/), embedded for installing.
package crd

import (
	"embed"
	"io/fs"
	"sort"
)

//go:embed bases/*.yaml
var bases embed.FS

// Bases returns the generated CRD documents, in file-name order.
func Bases() [][]byte {
	names, err := fs.Glob(bases, "bases/*.yaml")
	if err != nil {
		panic(err)
	}
	sort.Strings(names)
	out := make([][]byte, 0, len(names))
	for _, n := range names {
		b, err := bases.ReadFile(n)
		if err != nil {
			panic(err)
		}
		out = append(out, b)
	}
	return out
}
