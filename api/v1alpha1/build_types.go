package v1alpha1

// BuildSpec is the seed's inlined build.dev BuildSpec: what to build
// (source) and how (template with arguments such as _IMAGE, _ENTRY_POINT).
type BuildSpec struct {
	// Source is what to build. When omitted in elafros.yaml, the deployer
	// fills it with the repository holding the manifest at the commit
	// being deployed.
	// +optional
	Source *SourceSpec `json:"source,omitempty"`
	// Template names the builder and its arguments.
	Template TemplateInstantiationSpec `json:"template"`
}

// SourceSpec is one of the build sources. Only git is kept from the seed's
// git|gcs|custom: gcs is Google-specific and custom is a container run
// before the build, which the daemonless builders do not run.
type SourceSpec struct {
	// Git is a repository at a commit.
	// +optional
	Git *GitSourceSpec `json:"git,omitempty"`
}

// GitSourceSpec is a git repository at a commit.
type GitSourceSpec struct {
	// URL of the repository (https, ssh, or file).
	URL string `json:"url"`
	// Commit is a SHA, branch, tag or ref.
	Commit string `json:"commit"`
}

// TemplateInstantiationSpec names a builder and passes it arguments.
type TemplateInstantiationSpec struct {
	// Name of the builder, e.g. go, go-function or docker.
	Name string `json:"name"`
	// Namespace of the template, kept for the seed's shape.
	// +optional
	Namespace string `json:"namespace,omitempty"`
	// Arguments to the builder, e.g. _IMAGE (destination) or _ENTRY_POINT.
	// +optional
	// +listType=map
	// +listMapKey=name
	Arguments []ArgumentSpec `json:"arguments,omitempty"`
}

// ArgumentSpec is one builder argument.
type ArgumentSpec struct {
	// Name of the argument, e.g. _IMAGE.
	Name string `json:"name"`
	// Value of the argument.
	// +optional
	Value string `json:"value,omitempty"`
}

// Well-known builder arguments.
const (
	ArgImage      = "_IMAGE"
	ArgEntryPoint = "_ENTRY_POINT"
	ArgBaseImage  = "_BASE_IMAGE"
)

// Argument returns the value of the named argument and whether it is set.
func (t *TemplateInstantiationSpec) Argument(name string) (string, bool) {
	for _, a := range t.Arguments {
		if a.Name == name {
			return a.Value, true
		}
	}
	return "", false
}
