package apiserver

import (
	"fmt"
	"sync"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/config/crd"
)

// crds returns the embedded CustomResourceDefinitions (config/crd, the
// ones a cluster is given), by kind. The OpenAPI documents and the Table
// columns are built from them, so elafros serve describes its objects
// exactly as a cluster with the CRDs does.
var crds = sync.OnceValues(func() (map[string]*apiextensionsv1.CustomResourceDefinition, error) {
	out := map[string]*apiextensionsv1.CustomResourceDefinition{}
	for _, doc := range crd.Bases() {
		c := &apiextensionsv1.CustomResourceDefinition{}
		if err := yaml.UnmarshalStrict(doc, c); err != nil {
			return nil, fmt.Errorf("decoding an embedded CRD: %w", err)
		}
		if c.Spec.Group != v1alpha1.GroupName {
			return nil, fmt.Errorf("embedded CRD %s: group %q, want %s", c.Name, c.Spec.Group, v1alpha1.GroupName)
		}
		out[c.Spec.Names.Kind] = c
	}
	for _, k := range v1alpha1.Kinds {
		if out[k.Kind] == nil {
			return nil, fmt.Errorf("no embedded CRD for kind %s (run make generate)", k.Kind)
		}
		if servedVersion(out[k.Kind]) == nil {
			return nil, fmt.Errorf("embedded CRD %s does not serve %s", out[k.Kind].Name, v1alpha1.Version)
		}
	}
	return out, nil
})

// servedVersion returns the CRD's v1alpha1 version, or nil.
func servedVersion(c *apiextensionsv1.CustomResourceDefinition) *apiextensionsv1.CustomResourceDefinitionVersion {
	for i := range c.Spec.Versions {
		if v := &c.Spec.Versions[i]; v.Name == v1alpha1.Version && v.Served {
			return v
		}
	}
	return nil
}
