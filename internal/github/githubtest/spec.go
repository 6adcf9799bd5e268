package githubtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// SharedTestdataEnv overrides where the shared testdata folder is; by
// default it is ../shared/testdata beside the module's root, where the
// project's worktrees and CI keep it.
const SharedTestdataEnv = "ELAFROS_SHARED_TESTDATA"

// SharedTestdata returns the path of rel inside the shared testdata folder.
func SharedTestdata(rel string) (string, error) {
	if dir := os.Getenv(SharedTestdataEnv); dir != "" {
		return filepath.Join(dir, rel), nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			p := filepath.Join(dir, "..", "shared", "testdata", rel)
			if _, err := os.Stat(p); err != nil {
				return "", fmt.Errorf("shared testdata %s: %w (set %s to the folder holding github-openapi/ and github-webhooks/)", rel, err, SharedTestdataEnv)
			}
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("shared testdata: no go.mod above the working directory")
		}
		dir = parent
	}
}

// The description is 860 kB of JSON: load it once per test process. It is
// not validated as a document, because GitHub's own description carries one
// malformed example (the redelivery operation's) that validation rejects.
var (
	specOnce   sync.Once
	specRouter routers.Router
	specDoc    *openapi3.T
	specErr    error
)

func githubRouter() (routers.Router, error) {
	specOnce.Do(func() {
		path, err := SharedTestdata("github-openapi/rest.json")
		if err != nil {
			specErr = err
			return
		}
		loader := openapi3.NewLoader()
		doc, err := loader.LoadFromFile(path)
		if err != nil {
			specErr = fmt.Errorf("load %s: %w", path, err)
			return
		}
		// The description's server is https://api.github.com; the fake
		// listens on loopback, so routes match on path and method only.
		doc.Servers = nil
		specDoc = doc
		specRouter, specErr = gorillamux.NewRouter(doc)
	})
	return specRouter, specErr
}

// example is a deep copy of GitHub's documented example answer of
// operation op with status code (its first example); for a list, item
// picks the first element.
func example(op, code string, item bool) map[string]any {
	for _, pi := range specDoc.Paths.Map() {
		for _, o := range pi.Operations() {
			if o.OperationID != op {
				continue
			}
			r := o.Responses.Value(code)
			if r == nil || r.Value == nil {
				return map[string]any{}
			}
			mt := r.Value.Content.Get("application/json")
			if mt == nil {
				return map[string]any{}
			}
			v := mt.Example
			for _, name := range slices.Sorted(maps.Keys(mt.Examples)) {
				if v == nil && mt.Examples[name].Value != nil {
					v = mt.Examples[name].Value.Value
				}
			}
			b, _ := json.Marshal(v)
			var out any
			_ = json.Unmarshal(b, &out)
			if item {
				if l, ok := out.([]any); ok && len(l) > 0 {
					out = l[0]
				}
			}
			if m, ok := out.(map[string]any); ok {
				return m
			}
			return map[string]any{}
		}
	}
	return map[string]any{}
}

// shaped is GitHub's example answer of op with the fake's state laid over
// it: the fields the fake keeps are its own, the rest are as documented.
func shaped(op, code string, item bool, over map[string]any) map[string]any {
	return merge(example(op, code, item), over)
}

func merge(dst, src map[string]any) map[string]any {
	for k, v := range src {
		if sm, ok := v.(map[string]any); ok {
			if dm, ok := dst[k].(map[string]any); ok {
				dst[k] = merge(dm, sm)
				continue
			}
		}
		dst[k] = v
	}
	return dst
}
