// Package kubetest starts a real Kubernetes control plane for tests from
// the binaries hack/cluster/build.sh builds from the Go module proxy: etcd,
// kube-apiserver (token auth, RBAC, service-account signing key),
// kube-controller-manager (no node or cloud controllers, no leader
// election), kube-scheduler and kwok, all on loopback ports, with one kwok
// node whose not-ready taint is removed. A Deployment really becomes
// Available. Under CI the binaries must be there (the test fails); outside
// CI a missing cache skips with the command to run.
package kubetest

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/elafros/elafros/hack/cluster"
	"github.com/elafros/elafros/internal/testutil"
)

// AdminToken authenticates as a member of system:masters.
const AdminToken = "elafros-test-admin"

// NodeName is the kwok node's name.
const NodeName = "kwok-node-0"

// Cluster is a running test cluster.
type Cluster struct {
	// Config reaches the API server as admin.
	Config *rest.Config
	// Client is a clientset for Config.
	Client *kubernetes.Clientset
	// Dir holds the cluster's files (etcd data, certificates, logs).
	Dir string
	// BinDir holds the binaries; GatewayCRDs the Gateway API CRDs.
	BinDir, GatewayCRDs string
	// URL is the API server's https URL.
	URL string

	ctx   context.Context
	procs map[string]*proc
}

// proc is one of the cluster's processes, restartable with its arguments.
type proc struct {
	name, bin, log string
	args           []string
	mu             sync.Mutex
	cmd            *exec.Cmd
	logf           *os.File
}

func (p *proc) start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	logf, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, p.bin, p.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return fmt.Errorf("starting %s: %w", p.name, err)
	}
	p.cmd, p.logf = cmd, logf
	return nil
}

func (p *proc) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	// Killed, not interrupted: kube-apiserver's graceful shutdown waits a
	// minute for open requests, and a crash is the harsher restart.
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
	_ = p.logf.Close()
	p.cmd = nil
}

// Stop kills the named processes (etcd, kube-apiserver, …) in order.
func (c *Cluster) Stop(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		p, ok := c.procs[n]
		if !ok {
			t.Fatalf("no cluster process %q", n)
		}
		p.stop()
	}
}

// Start starts the named processes again, with their arguments and ports,
// and waits for the API server to be ready.
func (c *Cluster) Start(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		p, ok := c.procs[n]
		if !ok {
			t.Fatalf("no cluster process %q", n)
		}
		if err := p.start(c.ctx); err != nil {
			t.Fatal(err)
		}
	}
	waitReady(t, c)
}

// BinDir returns the cache directory of hack/cluster/build.sh, for the
// versions pinned in hack/cluster/versions.env.
func BinDir() string { return cluster.BinDir() }

// freePort is a port for a cluster process to listen on (see
// testutil.FreePort: kube-apiserver once failed with "address already in
// use" on a port picked with Listen(":0")).
func freePort(t testing.TB) int { return testutil.FreePort(t) }

// Start starts a cluster for t and stops it when t ends.
func Start(t testing.TB) *Cluster {
	t.Helper()
	bin := BinDir()
	for _, b := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			msg := fmt.Sprintf("the test cluster's %s is not built (%v): run bash hack/cluster/build.sh", b, err)
			if os.Getenv("CI") != "" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
	dir := t.TempDir()
	c := &Cluster{Dir: dir, BinDir: bin, GatewayCRDs: filepath.Join(bin, "gateway-api-crds")}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)

	c.procs = map[string]*proc{}
	run := func(name string, args ...string) {
		p := &proc{name: name, bin: filepath.Join(bin, name), args: args, log: filepath.Join(dir, name+".log")}
		c.procs[name] = p
		if err := p.start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			p.stop()
			if t.Failed() {
				if b, err := os.ReadFile(p.log); err == nil {
					t.Logf("--- %s log (tail):\n%s", name, tail(string(b), 30))
				}
			}
		})
	}
	c.ctx = ctx

	etcdClient, etcdPeer := freePort(t), freePort(t)
	run("etcd", "--name=default", "--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls=http://127.0.0.1:"+strconv.Itoa(etcdClient), "--advertise-client-urls=http://127.0.0.1:"+strconv.Itoa(etcdClient),
		"--listen-peer-urls=http://127.0.0.1:"+strconv.Itoa(etcdPeer), "--initial-advertise-peer-urls=http://127.0.0.1:"+strconv.Itoa(etcdPeer),
		"--initial-cluster=default=http://127.0.0.1:"+strconv.Itoa(etcdPeer), "--unsafe-no-fsync", "--log-level=warn")

	saKey := filepath.Join(dir, "sa.key")
	writeKey(t, saKey)
	tokens := filepath.Join(dir, "tokens.csv")
	if err := os.WriteFile(tokens, []byte(AdminToken+",admin,admin,system:masters\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	certDir := filepath.Join(dir, "certs")
	apiPort := freePort(t)
	c.URL = "https://127.0.0.1:" + strconv.Itoa(apiPort)
	run("kube-apiserver", "--etcd-servers=http://127.0.0.1:"+strconv.Itoa(etcdClient),
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--secure-port="+strconv.Itoa(apiPort),
		"--cert-dir="+certDir, "--token-auth-file="+tokens, "--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+saKey, "--service-account-signing-key-file="+saKey,
		"--service-cluster-ip-range=10.96.0.0/16", "--allow-privileged=true",
		"--endpoint-reconciler-type=none") // loopback may not be published as the kubernetes endpoint

	c.Config = &rest.Config{Host: c.URL, BearerToken: AdminToken, TLSClientConfig: rest.TLSClientConfig{Insecure: true}, QPS: 200, Burst: 400}
	waitReady(t, c)
	kubeconfig := filepath.Join(dir, "kubeconfig")
	writeKubeconfig(t, kubeconfig, c.URL, AdminToken)
	run("kube-controller-manager", "--kubeconfig="+kubeconfig, "--leader-elect=false",
		"--controllers=*,-node-ipam-controller,-node-lifecycle-controller",
		"--service-account-private-key-file="+saKey, "--root-ca-file="+filepath.Join(certDir, "apiserver.crt"),
		"--use-service-account-credentials=true", "--bind-address=127.0.0.1", "--secure-port=0")
	run("kube-scheduler", "--kubeconfig="+kubeconfig, "--leader-elect=false", "--bind-address=127.0.0.1", "--secure-port=0")
	run("kwok", "--kubeconfig="+kubeconfig, "--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
		"--config="+writeStages(t, dir, filepath.Join(bin, "kwok-stages.yaml")),
		"--server-address=127.0.0.1:"+strconv.Itoa(freePort(t)), "--node-ip=127.0.0.1")

	var err error
	if c.Client, err = kubernetes.NewForConfig(c.Config); err != nil {
		t.Fatal(err)
	}
	addNode(t, c)
	waitServiceAccount(t, c, "default")
	return c
}

// waitServiceAccount waits for the controller-manager to create a
// namespace's default ServiceAccount (pods are refused until then).
func waitServiceAccount(t testing.TB, c *Cluster, ns string) {
	t.Helper()
	testutil.EventuallyEvery(t, 60*time.Second, 100*time.Millisecond, "the default ServiceAccount of "+ns, func() (bool, string) {
		_, err := c.Client.CoreV1().ServiceAccounts(ns).Get(context.Background(), "default", metav1.GetOptions{})
		return err == nil, fmt.Sprint(err)
	})
}

func writeKey(t testing.TB, path string) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	b := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func writeKubeconfig(t testing.TB, path, server, token string) {
	t.Helper()
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster: {server: %q, insecure-skip-tls-verify: true}
users:
- name: admin
  user: {token: %q}
contexts:
- name: test
  context: {cluster: test, user: admin}
current-context: test
`, server, token)
	if err := os.WriteFile(path, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
}

// waitReady polls /readyz until the API server answers ok.
func waitReady(t testing.TB, c *Cluster) {
	t.Helper()
	tr, err := rest.TransportFor(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	testutil.EventuallyEvery(t, 90*time.Second, 200*time.Millisecond, "kube-apiserver's /readyz", func() (bool, string) {
		res, err := hc.Get(c.URL + "/readyz")
		if err != nil {
			return false, err.Error()
		}
		res.Body.Close()
		return res.StatusCode == 200, res.Status
	})
}

// addNode registers the kwok node and removes the not-ready taint that
// admission adds (the node lifecycle controller that would is off).
func addNode(t testing.TB, c *Cluster) {
	t.Helper()
	ctx := context.Background()
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: NodeName, Annotations: map[string]string{"kwok.x-k8s.io/node": "fake"},
			Labels: map[string]string{"type": "kwok", "kubernetes.io/hostname": NodeName}},
		Status: corev1.NodeStatus{Allocatable: corev1.ResourceList{
			corev1.ResourceCPU: resource.MustParse("32"), corev1.ResourceMemory: resource.MustParse("256Gi"), corev1.ResourcePods: resource.MustParse("2000")},
			Capacity: corev1.ResourceList{
				corev1.ResourceCPU: resource.MustParse("32"), corev1.ResourceMemory: resource.MustParse("256Gi"), corev1.ResourcePods: resource.MustParse("2000")}},
	}
	if _, err := c.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating the kwok node: %v", err)
	}
	testutil.EventuallyEvery(t, 60*time.Second, 200*time.Millisecond, "the kwok node to be Ready and untainted", func() (bool, string) {
		n, err := c.Client.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
		if err == nil {
			var keep []corev1.Taint
			for _, tn := range n.Spec.Taints {
				if tn.Key != "node.kubernetes.io/not-ready" {
					keep = append(keep, tn)
				}
			}
			if len(keep) != len(n.Spec.Taints) {
				n.Spec.Taints = keep
				_, err = c.Client.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{})
			}
			ready := false
			for _, cond := range n.Status.Conditions {
				if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
					ready = true
				}
			}
			return err == nil && ready && len(keep) == len(n.Spec.Taints), fmt.Sprintf("ready %v, taints %v, last error %v", ready, n.Spec.Taints, err)
		}
		return false, err.Error()
	})
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ServiceAccountConfig returns a rest.Config that authenticates as the
// ServiceAccount ns/name with a fresh token (TokenRequest), to run code
// under the roles bound to it instead of as admin.
func (c *Cluster) ServiceAccountConfig(t testing.TB, ns, name string) *rest.Config {
	t.Helper()
	exp := int64(3600)
	tr, err := c.Client.CoreV1().ServiceAccounts(ns).CreateToken(context.Background(), name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token for %s/%s: %v", ns, name, err)
	}
	return &rest.Config{Host: c.URL, BearerToken: tr.Status.Token, TLSClientConfig: rest.TLSClientConfig{Insecure: true}, QPS: 200, Burst: 400}
}
