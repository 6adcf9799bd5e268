package kubetest

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// Test workloads behave as their pod's labels say, through kwok stages, so
// that a test can make a real pod that never becomes ready or that
// crash-loops, and the code under test reads it from real pod status:
//
//	elafros-test/behavior: hold   the pod runs but is never Ready
//	elafros-test/behavior: crash  the pod runs and crash-loops, its last
//	                              termination having the exit code and
//	                              message of the annotations below
const (
	BehaviorLabel      = "elafros-test/behavior"
	BehaviorHold       = "hold"
	BehaviorCrash      = "crash"
	ExitCodeAnnotation = "elafros-test/exit-code"
	MessageAnnotation  = "elafros-test/message"
)

const crashStage = `apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-crashloop
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.status.phase'
      operator: 'In'
      values:
      - 'Pending'
    - key: '.metadata.labels["elafros-test/behavior"]'
      operator: 'In'
      values:
      - 'crash'
  next:
    statusTemplate: |
      {{ $now := Now }}
      {{ $root := . }}
      conditions:
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: Initialized
      - lastTransitionTime: {{ $now | Quote }}
        status: "False"
        reason: ContainersNotReady
        type: Ready
      - lastTransitionTime: {{ $now | Quote }}
        status: "False"
        reason: ContainersNotReady
        type: ContainersReady
      containerStatuses:
      {{ range .spec.containers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: false
        restartCount: 3
        lastState:
          terminated:
            exitCode: {{ or (index $root.metadata.annotations "elafros-test/exit-code") "1" }}
            reason: Error
            message: {{ or (index $root.metadata.annotations "elafros-test/message") "" | Quote }}
            startedAt: {{ $now | Quote }}
            finishedAt: {{ $now | Quote }}
        state:
          waiting:
            reason: CrashLoopBackOff
            message: {{ printf "back-off 40s restarting failed container=%s" .name | Quote }}
      {{ end }}
      phase: Running
      startTime: {{ $now | Quote }}
`

// holdStage brings a held pod to Running with its container started and
// never ready: kwok's last word on it, so that a test can wait for this
// and then know that nothing will make the pod ready.
const holdStage = `apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-hold
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.status.phase'
      operator: 'In'
      values:
      - 'Pending'
    - key: '.metadata.labels["elafros-test/behavior"]'
      operator: 'In'
      values:
      - 'hold'
  next:
    statusTemplate: |
      {{ $now := Now }}
      conditions:
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: Initialized
      - lastTransitionTime: {{ $now | Quote }}
        status: "False"
        reason: ContainersNotReady
        type: Ready
      - lastTransitionTime: {{ $now | Quote }}
        status: "False"
        reason: ContainersNotReady
        type: ContainersReady
      containerStatuses:
      {{ range .spec.containers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: false
        started: true
        restartCount: 0
        state:
          running:
            startedAt: {{ $now | Quote }}
      {{ end }}
      phase: Running
      startTime: {{ $now | Quote }}
`

// writeStages writes kwok's fast stages with pod-ready restricted to pods
// without a behavior label, plus the crash-loop and hold stages.
func writeStages(t testing.TB, dir, fast string) string {
	t.Helper()
	b, err := os.ReadFile(fast)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	found := false
	for _, doc := range bytes.Split(b, []byte("\n---\n")) {
		doc = bytes.TrimPrefix(bytes.TrimSpace(doc), []byte("---\n"))
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		var m map[string]any
		if err := yaml.Unmarshal(doc, &m); err != nil {
			t.Fatalf("kwok stages: %v", err)
		}
		if md, _ := m["metadata"].(map[string]any); md["name"] == "pod-ready" {
			found = true
			sel := m["spec"].(map[string]any)["selector"].(map[string]any)
			sel["matchExpressions"] = append(sel["matchExpressions"].([]any),
				map[string]any{"key": `.metadata.labels["` + BehaviorLabel + `"]`, "operator": "DoesNotExist"})
			if doc, err = yaml.Marshal(m); err != nil {
				t.Fatal(err)
			}
		}
		out.WriteString("---\n")
		out.Write(doc)
		out.WriteString("\n")
	}
	if !found {
		t.Fatalf("%s has no pod-ready stage", fast)
	}
	out.WriteString("---\n" + crashStage + "---\n" + holdStage)
	path := filepath.Join(dir, "kwok-stages.yaml")
	if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// GatewayAPICRDs returns the Gateway API standard CRDs built into the cache
// (without the safe-upgrade admission policy that ships beside them).
func (c *Cluster) GatewayAPICRDs(t testing.TB) [][]byte {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(c.GatewayCRDs, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no Gateway API CRDs in %s (%v): run bash hack/cluster/build.sh", c.GatewayCRDs, err)
	}
	var out [][]byte
	for _, f := range files {
		if strings.Contains(filepath.Base(f), "_vap_") {
			continue // a ValidatingAdmissionPolicy guarding upgrades, not a CRD
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}
