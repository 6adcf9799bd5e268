// Package crd holds the CustomResourceDefinitions generated from
// api/v1alpha1 by controller-gen (bases/), and the tests that keep them
// fresh and useful.
package crd

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"
)

// TestGeneratedFilesAreFresh regenerates deep-copy code and CRDs into a
// temporary directory with the pinned controller-gen and fails when the
// committed files differ: run "make generate".
func TestGeneratedFilesAreFresh(t *testing.T) {
	if testing.Short() && os.Getenv("CI") == "" {
		t.Skip("builds controller-gen; skipped with -short")
	}
	tmp := t.TempDir()
	cmd := exec.Command("bash", "../../hack/generate.sh")
	cmd.Env = append(os.Environ(), "OUT_OBJ="+filepath.Join(tmp, "obj"), "OUT_CRD="+filepath.Join(tmp, "crd"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("hack/generate.sh: %v\n%s", err, out)
	}
	pairs := map[string]string{
		filepath.Join(tmp, "obj", "zz_generated.deepcopy.go"): "../../api/v1alpha1/zz_generated.deepcopy.go",
	}
	gen, _ := filepath.Glob(filepath.Join(tmp, "crd", "*.yaml"))
	committed, _ := filepath.Glob("bases/*.yaml")
	if len(gen) != 4 || len(committed) != len(gen) {
		t.Fatalf("generated %d CRDs, %d committed; want 4 of each", len(gen), len(committed))
	}
	for _, g := range gen {
		pairs[g] = filepath.Join("bases", filepath.Base(g))
	}
	for fresh, tree := range pairs {
		want, err := os.ReadFile(fresh)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(tree)
		if err != nil {
			t.Fatalf("%v (run make generate)", err)
		}
		if d := cmp.Diff(string(want), string(got)); d != "" {
			t.Errorf("%s is stale; run make generate (-fresh +committed):\n%s", tree, d)
		}
	}
}

type crd struct {
	Spec struct {
		Group string `json:"group"`
		Names struct {
			Kind       string   `json:"kind"`
			Plural     string   `json:"plural"`
			ShortNames []string `json:"shortNames"`
			Categories []string `json:"categories"`
		} `json:"names"`
		Versions []struct {
			Name                     string         `json:"name"`
			Subresources             map[string]any `json:"subresources"`
			AdditionalPrinterColumns []struct {
				Name     string `json:"name"`
				JSONPath string `json:"jsonPath"`
			} `json:"additionalPrinterColumns"`
			Schema struct {
				OpenAPIV3Schema map[string]any `json:"openAPIV3Schema"`
			} `json:"schema"`
		} `json:"versions"`
	} `json:"spec"`
}

func load(t *testing.T, plural string) crd {
	t.Helper()
	b, err := os.ReadFile("bases/elafros.dev_" + plural + ".yaml")
	if err != nil {
		t.Fatal(err)
	}
	var c crd
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// walk follows properties down a schema.
func walk(t *testing.T, s map[string]any, path ...string) map[string]any {
	t.Helper()
	for _, p := range path {
		props, _ := s["properties"].(map[string]any)
		next, ok := props[p].(map[string]any)
		if !ok {
			if items, ok := s["items"].(map[string]any); ok && p == "[]" {
				s = items
				continue
			}
			t.Fatalf("schema has no %q under %v", p, path)
		}
		s = next
	}
	return s
}

func TestCRDs(t *testing.T) {
	columns := map[string][]string{
		"configurations": {"LatestCreated", "LatestReady", "Ready"},
		"revisions":      {"Configuration", "Ready", "Reason"},
		"routes":         {"Domain", "Revisions", "Percents", "Ready"},
		"services":       {"Domain", "Strategy", "LatestReady", "Ready"},
	}
	for plural, want := range columns {
		c := load(t, plural)
		if c.Spec.Group != "elafros.dev" || c.Spec.Names.Plural != plural || len(c.Spec.Versions) != 1 || c.Spec.Versions[0].Name != "v1alpha1" {
			t.Errorf("%s: group/names/versions = %+v", plural, c.Spec.Names)
			continue
		}
		v := c.Spec.Versions[0]
		if _, ok := v.Subresources["status"]; !ok {
			t.Errorf("%s: no status subresource", plural)
		}
		var got []string
		for _, pc := range v.AdditionalPrinterColumns {
			got = append(got, pc.Name)
		}
		for _, w := range want {
			if !strings.Contains(strings.Join(got, ","), w) {
				t.Errorf("%s: printer columns %v lack %s", plural, got, w)
			}
		}
	}

	// The seed's scenario-3 PATCH keeps FOO only if env is a list map
	// keyed by name.
	rev := load(t, "revisions").Spec.Versions[0].Schema.OpenAPIV3Schema
	env := walk(t, rev, "spec", "container", "env")
	if env["x-kubernetes-list-type"] != "map" || !cmp.Equal(env["x-kubernetes-list-map-keys"], []any{"name"}) {
		t.Errorf("revision env: list-type %v keys %v, want map keyed by name", env["x-kubernetes-list-type"], env["x-kubernetes-list-map-keys"])
	}
	cfg := load(t, "configurations").Spec.Versions[0].Schema.OpenAPIV3Schema
	env = walk(t, cfg, "spec", "revisionTemplate", "spec", "container", "env")
	if env["x-kubernetes-list-type"] != "map" {
		t.Errorf("configuration template env is not a list map")
	}
	// Template labels survive pruning (embedded ObjectMeta is generated).
	walk(t, cfg, "spec", "revisionTemplate", "metadata", "labels")

	rt := load(t, "routes").Spec.Versions[0].Schema.OpenAPIV3Schema
	pct := walk(t, rt, "spec", "rollout", "traffic", "[]", "percent")
	if pct["minimum"] != float64(0) || pct["maximum"] != float64(100) {
		t.Errorf("route percent bounds = %v..%v, want 0..100", pct["minimum"], pct["maximum"])
	}
	if _, ok := walk(t, rt, "spec")["properties"].(map[string]any)["traffic"]; ok {
		t.Error("route spec.traffic exists; the seed's shape is spec.rollout.traffic")
	}
}
