package bot

import (
	"context"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/deploy"
	"github.com/elafros/elafros/internal/github"
	"github.com/elafros/elafros/internal/local"
	"github.com/elafros/elafros/internal/store"
)

const sha = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// listed records the selector of every List.
type listed struct {
	store.Store
	mu   sync.Mutex
	sels []string
}

func (l *listed) List(ctx context.Context, k store.Kind, ns string, sel labels.Selector) ([]store.Object, error) {
	l.mu.Lock()
	l.sels = append(l.sels, sel.String())
	l.mu.Unlock()
	return l.Store.List(ctx, k, ns, sel)
}

func (l *listed) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.sels
	l.sels = nil
	return s
}

// A command's services are selected by the repository's label, with the
// unlabelled ones, so the bot does not read other repositories' services;
// one that carries the annotation alone, or a label in another case, is
// still found.
func TestServicesOf(t *testing.T) {
	st, err := local.Open(filepath.Join(t.TempDir(), "store.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	svc := func(name string, mark func(*v1alpha1.Service)) {
		s := &v1alpha1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}}
		s.Spec.RevisionTemplate.Spec.Container.Image = "example.com/app@sha256:" + sha
		mark(s)
		s.SetDefaults()
		if _, err := st.Create(t.Context(), s); err != nil {
			t.Fatal(err)
		}
	}
	from := func(repo string) func(*v1alpha1.Service) {
		return func(s *v1alpha1.Service) { deploy.Provenance{Repository: repo, Commit: sha}.Stamp(s) }
	}
	svc("web", from("Acme/Web"))
	svc("web-worker", from("Acme/Web"))
	svc("other", from("acme/other"))
	svc("by-hand", func(s *v1alpha1.Service) {
		s.Annotations = map[string]string{v1alpha1.RepositoryAnnotationKey: "Acme/Tools"}
	})
	svc("unmarked", func(*v1alpha1.Service) {})
	// Marked by hand beside the Action's: the annotation alone.
	svc("web-by-hand", func(s *v1alpha1.Service) {
		s.Annotations = map[string]string{v1alpha1.RepositoryAnnotationKey: "Acme/Web"}
	})
	// A hand-written label in the repository's own case, alone and beside
	// the Action's services.
	svc("cased", func(s *v1alpha1.Service) {
		s.Labels = map[string]string{v1alpha1.RepositoryLabelKey: "Acme.Cased"}
	})
	svc("web-legacy", func(s *v1alpha1.Service) {
		s.Labels = map[string]string{v1alpha1.RepositoryLabelKey: "Acme.Web"}
	})
	// In a case of its own: found only when nothing else is.
	svc("odd", func(s *v1alpha1.Service) {
		s.Labels = map[string]string{v1alpha1.RepositoryLabelKey: "ACME.odd"}
	})
	rec := &listed{Store: st}
	b := &Bot{o: Options{Deploy: deploy.New(rec, "default")}}
	in, unlabelled := v1alpha1.RepositoryLabelKey+" in ", "!"+v1alpha1.RepositoryLabelKey
	for _, tc := range []struct {
		repo  string
		want  []string
		lists []string
	}{
		{"Acme/Web", []string{"web", "web-by-hand", "web-legacy", "web-worker"}, []string{in + "(Acme.Web,acme.web)", unlabelled}},
		// GitHub's names are case-insensitive: a repository whose case
		// changed keeps the Action's services.
		{"acme/WEB", []string{"web", "web-by-hand", "web-worker"}, []string{in + "(acme.WEB,acme.web)", unlabelled}},
		{"acme/web", []string{"web", "web-by-hand", "web-worker"}, []string{in + "(acme.web)", unlabelled}},
		{"Acme/Tools", []string{"by-hand"}, []string{in + "(Acme.Tools,acme.tools)", unlabelled}},
		{"Acme/Cased", []string{"cased"}, []string{in + "(Acme.Cased,acme.cased)", unlabelled}},
		{"Acme/Odd", []string{"odd"}, []string{in + "(Acme.Odd,acme.odd)", unlabelled, ""}},
		{"acme/none", nil, []string{in + "(acme.none)", unlabelled, ""}},
	} {
		repo, err := github.ParseRepo(tc.repo)
		if err != nil {
			t.Fatal(err)
		}
		objs, err := b.servicesOf(t.Context(), repo)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, o := range objs {
			got = append(got, o.GetName())
		}
		slices.Sort(got)
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s: services (-want +got):\n%s", tc.repo, diff)
		}
		if diff := cmp.Diff(tc.lists, rec.take()); diff != "" {
			t.Errorf("%s: selectors listed (-want +got):\n%s", tc.repo, diff)
		}
	}
}
