package kubetest

import (
	"context"
	"testing"

	"github.com/elafros/elafros/internal/kube"
)

// TestGateway is the Gateway (default/elafros, of a GatewayClass no
// controller serves) that InstallElafros makes for HTTPRoutes to attach to.
const TestGateway = "default/elafros"

// InstallElafros prepares the cluster for elafros as "elafros install"
// does: the elafros.dev CRDs with the Gateway API's, the RBAC roles and
// ServiceAccounts of config/rbac, and TestGateway.
func (c *Cluster) InstallElafros(t testing.TB) {
	t.Helper()
	ctx := context.Background()
	if err := kube.InstallCRDs(ctx, c.Config, append(kube.CRDs(), c.GatewayAPICRDs(t)...)...); err != nil {
		t.Fatal(err)
	}
	if err := kube.ApplyManifests(ctx, c.Config, kube.RBAC()...); err != nil {
		t.Fatal(err)
	}
	gw := []byte(`apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: elafros-test}
spec: {controllerName: elafros.dev/test}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: elafros, namespace: default}
spec:
  gatewayClassName: elafros-test
  listeners:
  - {name: http, protocol: HTTP, port: 80}
`)
	if err := kube.ApplyManifests(ctx, c.Config, gw); err != nil {
		t.Fatal(err)
	}
}
