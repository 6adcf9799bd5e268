// Package kube is elafros' Kubernetes backend: the Store over the
// elafros.dev CRDs, the Runtime that turns a Revision into a Deployment and
// a Service, and the Traffic applier that turns a Route into Gateway API
// HTTPRoutes.
package kube

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/elafros/elafros/config/crd"
)

// FieldManager is the server-side-apply field manager of everything
// elafros writes to a cluster.
const FieldManager = "elafros"

var crdResource = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// CRDs returns the elafros.dev CustomResourceDefinitions.
func CRDs() [][]byte { return crd.Bases() }

// Decode splits YAML documents into objects (empty documents skipped).
func Decode(docs ...[]byte) ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	for _, doc := range docs {
		d := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(doc), 4096)
		for {
			u := &unstructured.Unstructured{}
			if err := d.Decode(&u.Object); err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				return nil, err
			}
			if len(u.Object) == 0 {
				continue
			}
			out = append(out, u)
		}
	}
	return out, nil
}

// InstallCRDs server-side-applies CustomResourceDefinitions and waits
// until each is Established (its API served).
func InstallCRDs(ctx context.Context, cfg *rest.Config, docs ...[]byte) error {
	objs, err := Decode(docs...)
	if err != nil {
		return fmt.Errorf("decoding CRDs: %w", err)
	}
	dc, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	crds := dc.Resource(crdResource)
	for _, o := range objs {
		if o.GetKind() != "CustomResourceDefinition" {
			return fmt.Errorf("%s %q is not a CustomResourceDefinition", o.GetKind(), o.GetName())
		}
		if _, err := crds.Apply(ctx, o.GetName(), o, metav1.ApplyOptions{FieldManager: FieldManager, Force: true}); err != nil {
			return fmt.Errorf("applying CRD %s: %w", o.GetName(), err)
		}
	}
	for _, o := range objs {
		if err := waitEstablished(ctx, crds, o.GetName()); err != nil {
			return err
		}
	}
	return nil
}

func waitEstablished(ctx context.Context, crds dynamic.NamespaceableResourceInterface, name string) error {
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		u, err := crds.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
		for _, c := range conds {
			m, _ := c.(map[string]any)
			if m["type"] == "Established" && m["status"] == "True" {
				return true, nil
			}
		}
		return false, nil
	})
	if wait.Interrupted(err) {
		return fmt.Errorf("CRD %s not Established within 60s: %w", name, err)
	}
	return err
}
