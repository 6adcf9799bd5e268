package apiserver

import (
	"net/http"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/elafros/elafros/api/v1alpha1"
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

func (s *Server) resourceList(w http.ResponseWriter, r *http.Request) {
	list := metav1.APIResourceList{TypeMeta: metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"}, GroupVersion: v1alpha1.APIVersion}
	for _, k := range v1alpha1.Kinds {
		list.APIResources = append(list.APIResources,
			metav1.APIResource{Name: k.Plural, SingularName: k.Singular, Namespaced: k.Namespaced, Kind: k.Kind, Verbs: verbs(k),
				ShortNames: k.ShortNames, Categories: k.Categories},
			metav1.APIResource{Name: k.Plural + "/status", Namespaced: k.Namespaced, Kind: k.Kind, Verbs: metav1.Verbs{"get", "patch", "update"}})
	}
	writeValue(w, r, http.StatusOK, list)
}

// verbs are a kind's verbs, as discovery lists them. Revisions are made by
// configurations: no update or patch of them through the API.
func verbs(k v1alpha1.KindInfo) metav1.Verbs {
	if k.Kind == "Revision" {
		return metav1.Verbs{"create", "delete", "get", "list", "watch"}
	}
	return metav1.Verbs{"create", "delete", "get", "list", "patch", "update", "watch"}
}
