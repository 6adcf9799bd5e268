package kube_test

import (
	"strconv"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/client"
	"github.com/elafros/elafros/internal/kube"
	"github.com/elafros/elafros/internal/store"
)

// TestCachedStore: reads come from the informers with no request, this
// Store's own writes and deletions are seen at once, another writer's
// changes arrive through the watch, and a watch event is never ahead of
// what Get returns.
func TestCachedStore(t *testing.T) {
	e := setup(t)
	ctx := t.Context()
	var n counter
	direct, err := client.New(n.wrap(e.action))
	if err != nil {
		t.Fatal(err)
	}
	cs := kube.NewCachedStore(direct, "")
	if err := cs.Start(ctx); err != nil {
		t.Fatal(err)
	}
	events, err := cs.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := client.New(e.c.Config)
	if err != nil {
		t.Fatal(err)
	}

	app(t, ctx, cs, "cached")
	reads := n.reads.Load()
	for range 3 {
		if _, err := cs.Get(ctx, store.KindConfiguration, "default", "cached"); err != nil {
			t.Fatalf("own create not seen at once: %v", err)
		}
		l, err := cs.List(ctx, store.KindRoute, "default", labels.Everything())
		if err != nil || len(l) != 1 || l[0].GetName() != "cached" {
			t.Fatalf("list after own create: %v %v", l, err)
		}
	}
	if r := n.reads.Load() - reads; r != 0 {
		t.Fatalf("cached reads made %d requests, want 0; the last: %v", r, n.recentReads())
	}

	// Another writer's change arrives through the informer; the event is
	// not ahead of Get.
	if _, err := admin.Patch(ctx, store.KindConfiguration, "default", "cached", types.MergePatchType,
		[]byte(`{"metadata":{"labels":{"touched":"yes"}}}`)); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(30 * time.Second)
	for seen := false; !seen; {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("watch closed")
			}
			if ev.Object.GetName() != "cached" || store.KindOf(ev.Object) != store.KindConfiguration || ev.Object.GetLabels()["touched"] != "yes" {
				continue
			}
			seen = true
			got, err := cs.Get(ctx, store.KindConfiguration, "default", "cached")
			if err != nil {
				t.Fatal(err)
			}
			evRV, _ := strconv.ParseUint(ev.Object.GetResourceVersion(), 10, 64)
			gotRV, _ := strconv.ParseUint(got.GetResourceVersion(), 10, 64)
			if gotRV < evRV || got.GetLabels()["touched"] != "yes" {
				t.Fatalf("Get after the event: resourceVersion %d, labels %v; the event had %d", gotRV, got.GetLabels(), evRV)
			}
		case <-deadline:
			t.Fatal("no watch event for another writer's change within 30s")
		}
	}

	// Own status write then read: the written status, not the cached one.
	o, err := cs.Get(ctx, store.KindConfiguration, "default", "cached")
	if err != nil {
		t.Fatal(err)
	}
	c := o.(*v1alpha1.Configuration)
	c.Status.LatestCreatedRevisionName = "cached-written"
	if _, err := cs.UpdateStatus(ctx, c); err != nil {
		t.Fatal(err)
	}
	o, err = cs.Get(ctx, store.KindConfiguration, "default", "cached")
	if err != nil || o.(*v1alpha1.Configuration).Status.LatestCreatedRevisionName != "cached-written" {
		t.Fatalf("own status write not seen at once: %v %v", o, err)
	}

	// Own deletion: gone at once from Get and List.
	if err := cs.Delete(ctx, store.KindRoute, "default", "cached"); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.Get(ctx, store.KindRoute, "default", "cached"); !apierrors.IsNotFound(err) {
		t.Fatalf("Get after own delete: %v, want NotFound", err)
	}
	if l, err := cs.List(ctx, store.KindRoute, "default", nil); err != nil || len(l) != 0 {
		t.Fatalf("List after own delete: %d objects, %v", len(l), err)
	}
	// A stale cached copy cannot overwrite a newer object.
	stale := o.(*v1alpha1.Configuration).DeepCopy()
	stale.ResourceVersion = "1"
	stale.Spec.RevisionTemplate.Spec.Container.Image = "gcr.io/elafros-samples/my-service:v2"
	if _, err := cs.Update(ctx, stale); !apierrors.IsConflict(err) {
		t.Fatalf("update from a stale copy: %v, want a Conflict", err)
	}
}
