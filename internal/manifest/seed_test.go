package manifest

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/elafros/elafros/api/v1alpha1"
)

// seedBlock is one ```yaml request or response body of the seed, with the
// HTTP request line that precedes it.
type seedBlock struct {
	request string // e.g. "POST /apis/elafros.dev/v1alpha1/namespaces/default/routes"
	line    int    // line of the block in the markdown
	body    string
}

var fenceRE = regexp.MustCompile("(?s)```http\n([^\n]*)\n```\n```yaml\n(.*?)```")

func seedBlocks(t *testing.T) []seedBlock {
	t.Helper()
	md, err := os.ReadFile("testdata/normative_examples.md")
	if err != nil {
		t.Fatal(err)
	}
	var out []seedBlock
	for _, m := range fenceRE.FindAllSubmatchIndex(md, -1) {
		out = append(out, seedBlock{
			request: string(md[m[2]:m[3]]),
			line:    strings.Count(string(md[:m[4]]), "\n") + 1,
			body:    string(md[m[4]:m[5]]),
		})
	}
	return out
}

// elided reports whether a body has "..." elisions (a line that is only
// "...", or a structure such as "metadata: ..." left out), as opposed to
// a placeholder string value such as "image: gcr.io/..." or "commit: ...".
var elisionRE = regexp.MustCompile(`(?m)^\s*\.\.\.|^\s*(metadata|spec|status):\s*\.\.\.`)

func elided(body string) bool { return elisionRE.MatchString(body) }

func TestSeedBodiesDecodeStrictly(t *testing.T) {
	blocks := seedBlocks(t)
	if len(blocks) != 22 {
		t.Fatalf("found %d http+yaml blocks in the seed, want 22 (did the extraction break?)", len(blocks))
	}
	var complete, rejected int
	for _, b := range blocks {
		if elided(b.body) {
			continue
		}
		complete++
		name := b.request + " (seed line " + strconv.Itoa(b.line) + ")"
		docs, errs := Decode("seed.yaml", []byte(b.body))
		if strings.Contains(b.body, "Traffic:") {
			rejected++
			want := `spec.rollout.Traffic: unknown field, did you mean "traffic"?`
			if len(errs) != 1 || !strings.Contains(errs[0].Error(), want) {
				t.Errorf("%s: errors %v, want one containing %q", name, errs, want)
			}
			if len(errs) == 1 && errs[0].Line != 7 || errs[0].Column != 5 {
				t.Errorf("%s: error at line %d, want 7:5 (the Traffic: key)", name, errs[0].Line)
			}
			continue
		}
		if len(errs) > 0 || len(docs) != 1 {
			t.Errorf("%s: decode: %v", name, errs)
			continue
		}
		// POST bodies are whole objects, and so are the Route PATCHes
		// (they replace the traffic list): they must validate. The
		// Configuration PATCHes are partial by design (a new image, or
		// one env entry) and validate only once merged.
		obj := docs[0].Object
		whole := strings.HasPrefix(b.request, "POST") || strings.Contains(b.request, "/routes/")
		if !whole {
			continue
		}
		obj.SetDefaults()
		if fe := obj.Validate(); len(fe) > 0 {
			t.Errorf("%s: validate: %v", name, fe)
		}
	}
	if complete != 8 || rejected != 1 {
		t.Errorf("complete bodies = %d (want 8), rejected Traffic bodies = %d (want 1)", complete, rejected)
	}
}

func TestSeedFunctionDefaults(t *testing.T) {
	for _, b := range seedBlocks(t) {
		if !strings.Contains(b.body, "name: my-function") {
			continue
		}
		docs, errs := Decode("seed.yaml", []byte(b.body))
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		c := docs[0].Object.(*v1alpha1.Configuration)
		c.SetDefaults()
		if c.Namespace != "default" {
			t.Errorf("namespace = %q, want default", c.Namespace)
		}
		s := c.Spec.RevisionTemplate.Spec
		if s.ConcurrencyModel != v1alpha1.ConcurrencySingleThreaded || *s.TimeoutSeconds != 20 {
			t.Errorf("concurrencyModel %q timeout %d, want SingleThreaded 20", s.ConcurrencyModel, *s.TimeoutSeconds)
		}
		if got, _ := c.Spec.Build.Template.Argument(v1alpha1.ArgEntryPoint); got != "index" {
			t.Errorf("_ENTRY_POINT = %q", got)
		}
		return
	}
	t.Fatal("the seed's function example was not found")
}
