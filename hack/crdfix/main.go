// Command crdfix post-processes the CRDs controller-gen writes: the
// revision's container embeds core/v1 Container, whose schema requires a
// name, but the Elafros API lets it be omitted (the seed's bodies do) and
// names it user-container. crdfix makes the name optional with that
// default, so that the seed's bodies apply to a cluster as they are.
//
//	go run ./hack/crdfix config/crd/bases/*.yaml
package main

import (
	"bytes"
	"fmt"
	"os"
	"slices"

	"sigs.k8s.io/yaml"

	"github.com/elafros/elafros/api/v1alpha1"
)

func main() {
	for _, path := range os.Args[1:] {
		if err := fix(path); err != nil {
			fmt.Fprintf(os.Stderr, "crdfix: %s: %v\n", path, err)
			os.Exit(1)
		}
	}
}

func fix(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return err
	}
	n := walk(doc)
	if n == 0 {
		return nil
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		return err
	}
	if bytes.HasPrefix(b, []byte("---\n")) {
		out = append([]byte("---\n"), out...)
	}
	return os.WriteFile(path, out, 0o644)
}

// walk finds every "container" property whose schema requires a name and
// makes the name optional, defaulted. It returns how many it changed.
func walk(v any) int {
	n := 0
	switch x := v.(type) {
	case map[string]any:
		if props, ok := x["properties"].(map[string]any); ok {
			if c, ok := props["container"].(map[string]any); ok && fixContainer(c) {
				n++
			}
		}
		for _, child := range x {
			n += walk(child)
		}
	case []any:
		for _, child := range x {
			n += walk(child)
		}
	}
	return n
}

func fixContainer(c map[string]any) bool {
	req, _ := c["required"].([]any)
	i := slices.Index(req, any("name"))
	if i < 0 {
		return false
	}
	req = slices.Delete(req, i, i+1)
	if len(req) == 0 {
		delete(c, "required")
	} else {
		c["required"] = req
	}
	if props, ok := c["properties"].(map[string]any); ok {
		if name, ok := props["name"].(map[string]any); ok {
			name["default"] = v1alpha1.DefaultContainerName
		}
	}
	return true
}
