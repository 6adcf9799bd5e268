package githubtest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
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
		specRouter, specErr = gorillamux.NewRouter(doc)
	})
	return specRouter, specErr
}
