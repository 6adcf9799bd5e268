package action_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/client"
	"github.com/elafros/elafros/internal/deploy"
	"github.com/elafros/elafros/internal/github/githubtest"
	"github.com/elafros/elafros/internal/kube"
	"github.com/elafros/elafros/internal/kube/kubetest"
	"github.com/elafros/elafros/internal/local/process/processtest"
	"github.com/elafros/elafros/internal/reconcile"
	elstore "github.com/elafros/elafros/internal/store"
)

// TestModesOnCluster runs the action binary against the test cluster
// (real etcd, kube-apiserver, controller-manager, scheduler, kwok) as the
// action's ServiceAccount through the kubeconfig input, with the bundled
// reconciler running inside the action while it waits.
func TestModesOnCluster(t *testing.T) {
	c := kubetest.Start(t)
	ctx := context.Background()
	c.InstallElafros(t)
	sa := c.ServiceAccountConfig(t, "elafros-system", "elafros-action")
	kubeconfig := fmt.Sprintf("apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster: {server: %q, insecure-skip-tls-verify: true}\nusers:\n- name: action\n  user: {token: %q}\ncontexts:\n- name: test\n  context: {cluster: test, user: action}\ncurrent-context: test\n", sa.Host, sa.BearerToken)
	registry := processtest.StartRegistry(t)
	gh := githubtest.NewServer(t)
	store, err := client.New(c.Config)
	must(t, err)
	ws, sha := workspace(t, fmt.Sprintf(helloManifest, "cluster", "automatic"))
	in := map[string]string{"kubeconfig": kubeconfig, "gateway": kubetest.TestGateway, "domain-suffix": "apps.example.com", "registry": registry + "/acme"}
	with := func(extra map[string]string) map[string]string {
		out := map[string]string{}
		for k, v := range in {
			out[k] = v
		}
		for k, v := range extra {
			out[k] = v
		}
		return out
	}

	r := runAction(t, gh, ws, "push", "push.json", in, nil)
	if r.code != 0 {
		t.Fatalf("deploy: exit %d\n%s", r.code, r.stdout)
	}
	if r.outputs["revision"] != "hello-00001" || r.outputs["url"] != "http://hello.default.apps.example.com" || !strings.HasPrefix(r.outputs["image"], registry+"/acme/default/hello@sha256:") {
		t.Errorf("outputs = %v", r.outputs)
	}
	rev, err := store.Get(ctx, elstore.KindRevision, "default", "hello-00001")
	must(t, err)
	if rev.GetAnnotations()[v1alpha1.GitCommitAnnotationKey] != sha || rev.(*v1alpha1.Revision).Spec.BuildName != "" {
		t.Errorf("revision: annotations %v, buildName %q (no build runs in the cluster)", rev.GetAnnotations(), rev.(*v1alpha1.Revision).Spec.BuildName)
	}
	dep, err := c.Client.AppsV1().Deployments("default").Get(ctx, kube.DeploymentName("hello-00001"), metav1.GetOptions{})
	if err != nil || !strings.Contains(dep.Spec.Template.Spec.Containers[0].Image, "@sha256:") {
		t.Errorf("the revision's Deployment: %v %v", dep, err)
	}
	dyn, err := dynamic.NewForConfig(c.Config)
	must(t, err)
	hr, err := dyn.Resource(schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "httproutes"}).Namespace("default").Get(ctx, "hello", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the route's HTTPRoute: %v", err)
	}
	if hosts, _, _ := unstructured.NestedStringSlice(hr.Object, "spec", "hostnames"); len(hosts) != 1 || hosts[0] != "hello.default.apps.example.com" {
		t.Errorf("HTTPRoute hostnames = %v", hosts)
	}

	// Dry run: nothing written (every elafros.dev object keeps its resourceVersion).
	versions := func() map[string]string {
		out := map[string]string{}
		for _, k := range []elstore.Kind{elstore.KindService, elstore.KindConfiguration, elstore.KindRoute, elstore.KindRevision} {
			objs, err := store.List(ctx, k, "default", labels.Everything())
			must(t, err)
			for _, o := range objs {
				out[string(k)+"/"+o.GetName()] = o.GetResourceVersion()
			}
		}
		return out
	}
	before := versions()
	commit(t, ws, map[string]string{"elafros.yaml": fmt.Sprintf(helloManifest, "changed", "automatic")})
	r = runAction(t, gh, ws, "push", "push.json", with(map[string]string{"dry-run": "true"}), nil)
	if r.code != 0 || !strings.Contains(r.summary, "| service/hello | configured |") {
		t.Errorf("dry run: exit %d\n%s\n%s", r.code, r.stdout, r.summary)
	}
	if after := versions(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("a dry run changed objects:\nbefore %v\nafter  %v", before, after)
	}

	// A preview on the cluster: pr-2 gets a host of its own at 0%.
	r = runAction(t, gh, ws, "pull_request", "pull_request.opened.json", in, nil)
	if r.code != 0 || r.outputs["preview-url"] != "http://pr-2.hello.default.apps.example.com" {
		t.Fatalf("preview: exit %d outputs %v\n%s", r.code, r.outputs, r.stdout)
	}
	if _, err := dyn.Resource(schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "httproutes"}).Namespace("default").Get(ctx, "hello--pr-2", metav1.GetOptions{}); err != nil {
		t.Errorf("the preview's HTTPRoute: %v", err)
	}
	// A refused rollout (an automatic route has no next): exit 1, unchanged.
	before = versions()
	r = runAction(t, gh, ws, "workflow_dispatch", "workflow_dispatch.json", with(map[string]string{"service": "hello", "rollout": "50"}), nil)
	if r.code != 1 || !strings.Contains(r.stdout, "refused") {
		t.Errorf("rollout on an automatic route: exit %d\n%s", r.code, r.stdout)
	}
	if after := versions(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("a refused rollout changed objects")
	}
	// Closed, then scheduled promotion with no canary under way.
	r = runAction(t, gh, ws, "pull_request", "pull_request.closed.json", in, nil)
	if r.code != 0 {
		t.Errorf("closed: exit %d\n%s", r.code, r.stdout)
	}
	// Each move (the preview staged at 0%, then its target removed) is a
	// Kubernetes Event on the Route too, written as the action.
	evs, err := c.Client.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=hello,involvedObject.kind=Route,reason=" + deploy.ReasonTrafficMoved})
	must(t, err)
	var moves []string
	slices.SortFunc(evs.Items, func(a, b corev1.Event) int { // in the order written
		x, _ := strconv.Atoi(a.ResourceVersion)
		y, _ := strconv.Atoi(b.ResourceVersion)
		return x - y
	})
	for _, e := range evs.Items {
		if e.Source.Component == "elafros-action" && e.InvolvedObject.APIVersion == v1alpha1.SchemeGroupVersion.String() {
			moves = append(moves, e.Message)
		}
	}
	if len(moves) != 2 || !strings.Contains(moves[0], "pr-2=hello-pr-2-00001:0%") || strings.Contains(moves[1], "→ pr-2") || !strings.Contains(moves[1], "action preview (pull_request)") {
		t.Errorf("TrafficMoved events on route hello = %q, want the preview staged, then removed", moves)
	}
	r = runAction(t, gh, ws, "schedule", "push.json", in, nil)
	if r.code != 0 || !strings.Contains(r.summary, "No canary is under way.") {
		t.Errorf("promote: exit %d\n%s", r.code, r.summary)
	}

	// The strategy's own moves are Events too, by the reconciler: a push
	// that makes the service manual, with a new revision, has it pin the
	// current one and stage the new one as next at 0%.
	commit(t, ws, map[string]string{"elafros.yaml": fmt.Sprintf(helloManifest, "manual now", "manual")})
	r = runAction(t, gh, ws, "push", "push.json", in, nil)
	if r.code != 0 {
		t.Fatalf("deploy as manual: exit %d\n%s", r.code, r.stdout)
	}
	evs, err = c.Client.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=hello,involvedObject.kind=Route,reason=" + deploy.ReasonTrafficMoved})
	must(t, err)
	var strategy []string
	for _, e := range evs.Items {
		if e.Source.Component == "elafros-reconciler" {
			strategy = append(strategy, e.Message)
		}
	}
	staged := false
	for _, m := range strategy {
		if strings.HasPrefix(m, reconcile.StrategyActor+" moved traffic: ") && strings.Contains(m, "next=hello-00002:0% (strategy manual: revision hello-00002 is ready)") {
			staged = true
		}
	}
	if !staged {
		t.Errorf("the reconciler's TrafficMoved events on route hello = %q, want the strategy staging hello-00002 as next at 0%%", strategy)
	}
}
