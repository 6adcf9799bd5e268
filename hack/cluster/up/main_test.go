package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/elafros/elafros/hack/cluster"
	"github.com/elafros/elafros/internal/kube/kubetest"
)

// TestMain lets up() start this test binary as the cluster's holder, as
// the command starts itself with "run".
func TestMain(m *testing.M) {
	if os.Getenv("ELAFROS_CLUSTER_UP_HOLDER") == "1" {
		if err := run(stateDir()); err != nil {
			os.Stderr.WriteString("cluster: " + err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestUpDown starts the cluster as make cluster-up does, uses it through
// the printed KUBECONFIG, and stops it as make cluster-down does.
func TestUpDown(t *testing.T) {
	for _, b := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"} {
		if _, err := os.Stat(filepath.Join(cluster.BinDir(), b)); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is not built: run bash hack/cluster/build.sh", b)
			}
			t.Skipf("%s is not built: run bash hack/cluster/build.sh", b)
		}
	}
	dir := filepath.Join(t.TempDir(), "up")
	t.Setenv("ELAFROS_CLUSTER_UP_DIR", dir)
	t.Setenv("ELAFROS_CLUSTER_UP_HOLDER", "1")
	var out bytes.Buffer
	if err := up(&out, dir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = down(&bytes.Buffer{}, dir) })
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if !strings.Contains(out.String(), "export KUBECONFIG="+kubeconfig) || !strings.Contains(out.String(), "make cluster-down") {
		t.Errorf("up printed:\n%s", out.String())
	}
	pid, ok := running(dir)
	if !ok {
		t.Fatal("no holder process after up")
	}

	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if _, err := cs.CoreV1().Nodes().Get(ctx, kubetest.NodeName, metav1.GetOptions{}); err != nil {
		t.Errorf("the kwok node: %v", err)
	}
	if _, err := cs.Discovery().ServerResourcesForGroupVersion("gateway.networking.k8s.io/v1"); err != nil {
		t.Errorf("Gateway API CRDs: %v", err)
	}

	out.Reset()
	if err := up(&out, dir); err != nil {
		t.Fatal(err)
	}
	if again, _ := running(dir); again != pid || !strings.Contains(out.String(), "export KUBECONFIG=") {
		t.Errorf("a second up started process %d (first %d) or printed:\n%s", again, pid, out.String())
	}

	out.Reset()
	if err := down(&out, dir); err != nil {
		t.Fatal(err)
	}
	if _, ok := running(dir); ok || !strings.Contains(out.String(), "stopped") {
		t.Errorf("after down: running=%v, printed %q", ok, out.String())
	}
	if _, err := cs.Discovery().ServerVersion(); err == nil {
		t.Error("the API server still answers after down")
	}
}
