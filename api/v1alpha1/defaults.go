package v1alpha1

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Documented defaults and bounds.
const (
	// DefaultNamespace is used when metadata.namespace is empty.
	DefaultNamespace = "default"
	// DefaultTimeoutSeconds is a revision's request timeout when unset.
	DefaultTimeoutSeconds int64 = 300
	// MaxTimeoutSeconds is the largest timeoutSeconds accepted.
	MaxTimeoutSeconds int64 = 3600
	// DefaultContainerName names the user's container when unset; the
	// core/v1 Container requires a name and the seed never writes one.
	DefaultContainerName = "user-container"
	// DefaultCanaryInterval is the least time a canary stays at a step.
	DefaultCanaryInterval = 10 * time.Minute
)

// DefaultCanarySteps are the percents a canary walks through when a
// Service with strategy canary names none.
func DefaultCanarySteps() []int { return []int{5, 25, 50, 100} }

// SetDefaults fills the defaults of a Configuration.
func (c *Configuration) SetDefaults() {
	defaultMeta(&c.ObjectMeta)
	c.Spec.SetDefaults()
}

// SetDefaults fills the defaults of a Configuration spec.
func (s *ConfigurationSpec) SetDefaults() {
	s.RevisionTemplate.Spec.setDefaults(s.RevisionTemplate.Labels)
	if s.Build != nil && s.RevisionTemplate.Spec.Container.Image == "" {
		// The seed: the template's image is the promise of the build, the
		// same as build.template.arguments[_IMAGE].
		if img, ok := s.Build.Template.Argument(ArgImage); ok {
			s.RevisionTemplate.Spec.Container.Image = img
		}
	}
}

// SetDefaults fills the defaults of a Revision.
func (r *Revision) SetDefaults() {
	defaultMeta(&r.ObjectMeta)
	r.Spec.setDefaults(r.Labels)
}

// setDefaults fills a revision spec; labels are the revision's (or the
// template's) labels, which carry elafros.dev/type.
func (s *RevisionSpec) setDefaults(labels map[string]string) {
	if s.ConcurrencyModel == "" {
		if labels[TypeLabelKey] == TypeFunction {
			s.ConcurrencyModel = ConcurrencySingleThreaded
		} else {
			s.ConcurrencyModel = ConcurrencyMulti
		}
	}
	if s.TimeoutSeconds == nil {
		t := DefaultTimeoutSeconds
		s.TimeoutSeconds = &t
	}
	if s.Container.Name == "" {
		s.Container.Name = DefaultContainerName
	}
}

// SetDefaults fills the defaults of a Route.
func (r *Route) SetDefaults() {
	defaultMeta(&r.ObjectMeta)
}

// SetDefaults fills the defaults of a Service.
func (s *Service) SetDefaults() {
	defaultMeta(&s.ObjectMeta)
	s.Spec.ConfigurationSpec.SetDefaults()
	s.Spec.Rollout.SetDefaults()
}

// SetDefaults fills the defaults of a rollout policy.
func (p *ServiceRollout) SetDefaults() {
	if p.Strategy == "" {
		p.Strategy = StrategyAutomatic
	}
	if p.Strategy == StrategyCanary {
		if len(p.Steps) == 0 {
			p.Steps = DefaultCanarySteps()
		}
		if p.Interval == nil {
			p.Interval = &metav1.Duration{Duration: DefaultCanaryInterval}
		}
	}
	if p.Previews == nil {
		on := true
		p.Previews = &on
	}
}

func defaultMeta(m *metav1.ObjectMeta) {
	if m.Namespace == "" {
		m.Namespace = DefaultNamespace
	}
}
