package kube

import (
	"fmt"
	"strings"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/elafros/elafros/api/v1alpha1"
)

// Labels and names of the workloads and HTTPRoutes elafros makes.
const (
	// RevisionLabelKey selects a revision's Deployment, Service and pods.
	RevisionLabelKey = v1alpha1.GroupName + "/revision"
	// TagLabelKey marks a named target's HTTPRoute with its tag.
	TagLabelKey = v1alpha1.GroupName + "/tag"
	// ManagedByLabelKey/ManagedByValue mark everything elafros owns in a
	// cluster; informers watch only those.
	ManagedByLabelKey = "app.kubernetes.io/managed-by"
	ManagedByValue    = "elafros"
	// ServicePort is the port of a revision's Service (targetPort is the
	// container's port, 8080 by default).
	ServicePort = 80
)

// DeploymentName is the name of a revision's Deployment.
func DeploymentName(revision string) string { return revision + "-deployment" }

// ServiceName is the name of a revision's Service, which HTTPRoutes send
// traffic to.
func ServiceName(revision string) string { return revision }

// HTTPRouteName is the name of a route's HTTPRoute for its domain (tag
// "") or for a named target's host.
func HTTPRouteName(route, tag string) string {
	if tag == "" {
		return route
	}
	return route + "--" + tag
}

// ParseGateway reads NAMESPACE/NAME[:LISTENER], the Gateway every
// HTTPRoute attaches to.
func ParseGateway(v string) (gatewayv1.ParentReference, error) {
	bad := fmt.Errorf("%q: want NAMESPACE/NAME or NAMESPACE/NAME:LISTENER (the Gateway the HTTPRoutes attach to)", v)
	nsName, listener, _ := strings.Cut(v, ":")
	ns, name, ok := strings.Cut(nsName, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return gatewayv1.ParentReference{}, bad
	}
	gns := gatewayv1.Namespace(ns)
	ref := gatewayv1.ParentReference{Name: gatewayv1.ObjectName(name), Namespace: &gns}
	if listener != "" {
		sn := gatewayv1.SectionName(listener)
		ref.SectionName = &sn
	}
	return ref, nil
}
