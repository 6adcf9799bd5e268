package apiserver

import (
	"net/http"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/reconcile"
)

// Version is reported on /version.
var Version = "v0.1.0-dev"

func (s *Server) version(w http.ResponseWriter, r *http.Request) {
	v := map[string]string{"gitVersion": Version, "platform": "elafros serve"}
	for k, x := range s.info {
		v[k] = x
	}
	writeValue(w, r, http.StatusOK, v)
}

func groupVersion() metav1.GroupVersionForDiscovery {
	return metav1.GroupVersionForDiscovery{GroupVersion: v1alpha1.APIVersion, Version: v1alpha1.Version}
}

func apiGroup() metav1.APIGroup {
	return metav1.APIGroup{
		TypeMeta:         metav1.TypeMeta{Kind: "APIGroup", APIVersion: "v1"},
		Name:             v1alpha1.GroupName,
		Versions:         []metav1.GroupVersionForDiscovery{groupVersion()},
		PreferredVersion: groupVersion(),
	}
}

func (s *Server) groups(w http.ResponseWriter, r *http.Request) {
	writeValue(w, r, http.StatusOK, metav1.APIGroupList{TypeMeta: metav1.TypeMeta{Kind: "APIGroupList", APIVersion: "v1"}, Groups: []metav1.APIGroup{apiGroup()}})
}

func (s *Server) group(w http.ResponseWriter, r *http.Request) {
	writeValue(w, r, http.StatusOK, apiGroup())
}

var shortNames = map[string][]string{
	"configurations": {"config", "cfg"},
	"revisions":      {"rev", "revs"},
	"routes":         {"rt"},
	"services":       {"esvc"},
}

func (s *Server) resourceList(w http.ResponseWriter, r *http.Request) {
	list := metav1.APIResourceList{TypeMeta: metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"}, GroupVersion: v1alpha1.APIVersion}
	for _, plural := range []string{"configurations", "revisions", "routes", "services"} {
		kind := string(resources[plural])
		verbs := metav1.Verbs{"create", "delete", "get", "list", "patch", "update", "watch"}
		if resources[plural] == reconcile.KindRevision {
			verbs = metav1.Verbs{"delete", "get", "list", "watch", "create"}
		}
		list.APIResources = append(list.APIResources,
			metav1.APIResource{Name: plural, SingularName: kind, Namespaced: true, Kind: kind, Verbs: verbs, ShortNames: shortNames[plural], Categories: []string{"elafros"}},
			metav1.APIResource{Name: plural + "/status", Namespaced: true, Kind: kind, Verbs: metav1.Verbs{"get", "patch", "update"}})
	}
	writeValue(w, r, http.StatusOK, list)
}
