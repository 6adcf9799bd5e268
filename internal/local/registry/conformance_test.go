package registry_test

import (
	"bytes"
	"context"
	"encoding/xml"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"

	"github.com/elafros/elafros/internal/local/registry"
)

var update = flag.Bool("update", false, "rewrite testdata/oci-conformance.golden from this run")

// workflows groups the suite's APIs (its results.yaml names) into the
// distribution-spec's four workflows. An API the suite adds that is not
// listed here fails the test, so the grouping cannot silently drift.
var workflows = []struct {
	name string
	apis []string
}{
	{"pull", []string{"Ping", "Manifest get by digest", "Manifest get by tag", "Manifest head by digest", "Manifest head by tag",
		"Blob get", "Blob get range", "Blob head"}},
	{"push", []string{"Blob push", "Blob post only", "Blob post put", "Blob chunked", "Blob streaming", "Blob mount",
		"Blob anonymous mount", "Blob upload cancel", "Manifest put by digest", "Manifest put by tag",
		"Manifest put with tag params", "Manifest put with subject"}},
	{"content discovery", []string{"Tag listing", "Referrers"}},
	{"content management", []string{"Tag delete", "Tag delete atomic", "Manifest delete", "Manifest delete atomic",
		"Blob delete", "Blob delete atomic"}},
}

// TestOCIConformance runs the OCI distribution-spec conformance suite
// (github.com/opencontainers/distribution-spec/conformance, pinned in
// hack/tools/oci-conformance/go.mod; a main package, built here) against
// the embedded registry with every workflow enabled, and compares what
// passed, failed and was skipped with testdata/oci-conformance.golden.
// Any FAIL or Error fails the test whatever the golden file says.
func TestOCIConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the OCI conformance suite")
	}
	bin := buildSuite(t)
	reg, err := registry.New(context.Background(), registry.Options{Dir: t.TempDir(),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reg.Close() })
	srv := httptest.NewServer(reg)
	t.Cleanup(srv.Close)

	results := t.TempDir()
	cmd := exec.Command(bin)
	cmd.Dir = results
	cmd.Env = append(os.Environ(),
		"OCI_REGISTRY="+strings.TrimPrefix(srv.URL, "http://"),
		"OCI_TLS=disabled",
		"OCI_VERSION=1.1",
		"OCI_REPO1=conformance/repo1",
		"OCI_REPO2=conformance/repo2",
		"OCI_RESULTS_DIR="+results,
		"OCI_LOG=error",
		// Everything the suite can check, beyond its defaults: deletes
		// (content management) and the optional upload cancel.
		"OCI_API_PULL=true", "OCI_API_PUSH=true",
		"OCI_API_BLOBS_DELETE=true", "OCI_API_MANIFESTS_DELETE=true", "OCI_API_TAGS_DELETE=true",
		"OCI_API_TAGS_LIST=true", "OCI_API_REFERRER=true", "OCI_API_BLOBS_UPLOAD_CANCEL=true",
		// Distribution v3.1.2 digests blobs with sha256 only; sha512 is a
		// MAY of the spec, and elafros' builders push sha256.
		"OCI_DATA_SHA512=false",
	)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	runErr := cmd.Run()
	t.Logf("conformance suite output:\n%s", out.String())
	if _, err := os.Stat(filepath.Join(results, "results.yaml")); err != nil {
		t.Fatalf("the suite wrote no results (%v): %v", runErr, err)
	}

	apis := readAPIs(t, filepath.Join(results, "results.yaml"))
	leaves := readLeaves(t, filepath.Join(results, "junit.xml"))
	summary := summarize(t, apis, leaves)
	t.Logf("\n%s", summary)

	golden := filepath.Join("testdata", "oci-conformance.golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, []byte(summary), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to record)", err)
	}
	if diff := cmp.Diff(string(want), summary); diff != "" {
		t.Errorf("conformance results differ from %s (-want +got; -update records a new baseline):\n%s", golden, diff)
	}
	for name, st := range apis {
		if st == "FAIL" || st == "Error" {
			t.Errorf("API %q: %s", name, st)
		}
	}
	if leaves.failed > 0 {
		t.Errorf("%d of the suite's tests failed", leaves.failed)
	}
}

// buildSuite builds the pinned conformance suite into a temporary
// directory (the Go build cache makes it quick after the first time).
func buildSuite(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", "..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "oci-conformance")
	cmd := exec.Command("go", "build", "-modfile="+filepath.Join(root, "hack", "tools", "oci-conformance", "go.mod"),
		"-o", bin, "github.com/opencontainers/distribution-spec/conformance")
	cmd.Dir = root
	// The suite is built without the race detector whatever this test
	// runs with.
	cmd.Env = append(os.Environ(), "GOFLAGS=-buildvcs=false")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the OCI conformance suite: %v\n%s", err, out)
	}
	return bin
}

func readAPIs(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		APIs map[string]string `json:"apis"`
	}
	if err := yaml.Unmarshal(b, &r); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if len(r.APIs) == 0 {
		t.Fatalf("%s lists no API results", path)
	}
	return r.APIs
}

// leafCounts are the suite's individual test cases by outcome.
type leafCounts struct{ passed, failed, skipped, disabled int }

func readLeaves(t *testing.T, path string) leafCounts {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var suites struct {
		Suites []struct {
			Cases []struct {
				Status string `xml:"status,attr"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(b, &suites); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var c leafCounts
	for _, s := range suites.Suites {
		for _, tc := range s.Cases {
			switch tc.Status {
			case "passed":
				c.passed++
			case "failure", "error":
				c.failed++
			case "skipped":
				c.skipped++
			default:
				c.disabled++
			}
		}
	}
	return c
}

// summarize is the per-workflow record kept in the golden file: each
// workflow's APIs with their status and the counts, then the suite's
// test cases.
func summarize(t *testing.T, apis map[string]string, leaves leafCounts) string {
	t.Helper()
	var b strings.Builder
	seen := map[string]bool{}
	for _, wf := range workflows {
		count := map[string]int{}
		var lines []string
		for _, api := range wf.apis {
			st, ok := apis[api]
			if !ok {
				st = "not reported"
			}
			seen[api] = true
			count[st]++
			lines = append(lines, fmt.Sprintf("  %-30s %s", api, st))
		}
		fmt.Fprintf(&b, "%s: %d passed, %d failed, %d skipped, %d disabled\n", wf.name,
			count["Pass"], count["FAIL"]+count["Error"], count["Skip"], count["Disabled"])
		for _, l := range lines {
			b.WriteString(l + "\n")
		}
	}
	var unknown []string
	for api := range apis {
		if !seen[api] {
			unknown = append(unknown, api)
		}
	}
	slices.Sort(unknown)
	if len(unknown) > 0 {
		t.Errorf("the suite reports APIs no workflow lists: %v", unknown)
	}
	fmt.Fprintf(&b, "test cases: %d passed, %d failed, %d skipped, %d disabled\n", leaves.passed, leaves.failed, leaves.skipped, leaves.disabled)
	return b.String()
}
