package v1alpha1

import (
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Name bounds. A Configuration's (and so a Service's) revisions are named
// <configuration>-00001, and every revision becomes a DNS label and a
// Kubernetes Service name, so configuration names leave room for the suffix.
const (
	MaxRouteNameLength         = validation.DNS1035LabelMaxLength
	MaxConfigurationNameLength = validation.DNS1035LabelMaxLength - len("-00000")
)

// Validate checks a Configuration.
func (c *Configuration) Validate() field.ErrorList {
	errs := validateObjectMeta(&c.ObjectMeta, MaxConfigurationNameLength, field.NewPath("metadata"))
	return append(errs, c.Spec.Validate(field.NewPath("spec"))...)
}

// Validate checks a Revision.
func (r *Revision) Validate() field.ErrorList {
	errs := validateObjectMeta(&r.ObjectMeta, validation.DNS1035LabelMaxLength, field.NewPath("metadata"))
	errs = append(errs, validateTypeLabel(r.Labels, field.NewPath("metadata", "labels"))...)
	return append(errs, r.Spec.validate(field.NewPath("spec"), true)...)
}

// Validate checks a Route.
func (r *Route) Validate() field.ErrorList {
	errs := validateObjectMeta(&r.ObjectMeta, MaxRouteNameLength, field.NewPath("metadata"))
	errs = append(errs, ValidateRolloutDuration(r.Annotations, field.NewPath("metadata", "annotations"))...)
	return append(errs, r.Spec.Validate(field.NewPath("spec"))...)
}

// RolloutDuration is a Route's elafros.dev/rollout-duration (0 when
// absent).
func RolloutDuration(annotations map[string]string) (time.Duration, error) {
	v, ok := annotations[RolloutDurationAnnotationKey]
	if !ok {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%s: must be a duration such as 90s or 5m (0s: at once), got %q", RolloutDurationAnnotationKey, v)
	}
	return d, nil
}

// ValidateRolloutDuration checks the elafros.dev/rollout-duration
// annotation.
func ValidateRolloutDuration(annotations map[string]string, path *field.Path) field.ErrorList {
	if _, err := RolloutDuration(annotations); err != nil {
		return field.ErrorList{field.Invalid(path.Key(RolloutDurationAnnotationKey), annotations[RolloutDurationAnnotationKey],
			"must be a duration such as 90s or 5m (0s: at once)")}
	}
	return nil
}

// Validate checks a Service.
func (s *Service) Validate() field.ErrorList {
	errs := validateObjectMeta(&s.ObjectMeta, MaxConfigurationNameLength, field.NewPath("metadata"))
	spec := field.NewPath("spec")
	errs = append(errs, s.Spec.ConfigurationSpec.Validate(spec)...)
	return append(errs, s.Spec.Rollout.Validate(spec.Child("rollout"))...)
}

// Validate checks a Configuration spec (also a Service's).
func (s *ConfigurationSpec) Validate(path *field.Path) field.ErrorList {
	var errs field.ErrorList
	if s.Build != nil {
		errs = append(errs, s.Build.Validate(path.Child("build"))...)
	}
	tmpl := path.Child("revisionTemplate")
	errs = append(errs, validateTemplateMeta(&s.RevisionTemplate.ObjectMeta, tmpl.Child("metadata"))...)
	// With a build, the image is the promise of the build's _IMAGE, or is
	// filled by the deployer (its registry) when both are empty.
	errs = append(errs, s.RevisionTemplate.Spec.validate(tmpl.Child("spec"), s.Build == nil)...)
	if s.Build != nil {
		img, ok := s.Build.Template.Argument(ArgImage)
		if got := s.RevisionTemplate.Spec.Container.Image; ok && got != "" && got != img {
			errs = append(errs, field.Invalid(tmpl.Child("spec", "container", "image"), got,
				fmt.Sprintf("must equal build.template.arguments %s (%q): the image is the promise of that build", ArgImage, img)))
		}
	}
	return errs
}

// Validate checks a build spec.
func (b *BuildSpec) Validate(path *field.Path) field.ErrorList {
	var errs field.ErrorList
	if b.Source != nil {
		src := path.Child("source")
		if b.Source.Git == nil {
			errs = append(errs, field.Required(src.Child("git"),
				"set source.git {url, commit}, or omit source to build the repository that holds the manifest"))
		} else {
			if strings.TrimSpace(b.Source.Git.URL) == "" {
				errs = append(errs, field.Required(src.Child("git", "url"), "the repository URL to clone"))
			}
			if strings.TrimSpace(b.Source.Git.Commit) == "" {
				errs = append(errs, field.Required(src.Child("git", "commit"), "a commit SHA, branch or tag"))
			}
		}
	}
	tp := path.Child("template")
	if b.Template.Name == "" {
		errs = append(errs, field.Required(tp.Child("name"), "the builder, e.g. go, go-function or docker"))
	}
	seen := map[string]int{}
	for i, a := range b.Template.Arguments {
		ap := tp.Child("arguments").Index(i).Child("name")
		switch {
		case a.Name == "":
			errs = append(errs, field.Required(ap, "an argument name such as _IMAGE"))
		case strings.ContainsAny(a.Name, " \t\n="):
			errs = append(errs, field.Invalid(ap, a.Name, "must not contain spaces or '='"))
		}
		if j, dup := seen[a.Name]; dup && a.Name != "" {
			errs = append(errs, field.Invalid(ap, a.Name, fmt.Sprintf("duplicate argument; already set at arguments[%d]", j)))
		}
		seen[a.Name] = i
	}
	return errs
}

// Validate checks a Route spec. Messages follow Elafros' own where they
// exist.
func (s *RouteSpec) Validate(path *field.Path) field.ErrorList {
	tp := path.Child("rollout", "traffic")
	if len(s.Rollout.Traffic) == 0 {
		return field.ErrorList{field.Required(tp, "a route needs at least one traffic target, e.g. {configurationName: my-service, percent: 100}")}
	}
	var errs field.ErrorList
	sum, percentsOK := 0, true
	byName := map[string]int{}
	for i, t := range s.Rollout.Traffic {
		ip := tp.Index(i)
		switch {
		case t.RevisionName == "" && t.ConfigurationName == "":
			errs = append(errs, field.Required(ip, "the route must have exactly one of revisionName or configurationName in traffic field"))
		case t.RevisionName != "" && t.ConfigurationName != "":
			errs = append(errs, field.Invalid(ip, nil, fmt.Sprintf(
				"the route must have exactly one of revisionName or configurationName in traffic field; this target sets both (revisionName %q, configurationName %q)",
				t.RevisionName, t.ConfigurationName)))
		case t.RevisionName != "":
			errs = append(errs, validateRefName(ip.Child("revisionName"), t.RevisionName)...)
		default:
			errs = append(errs, validateRefName(ip.Child("configurationName"), t.ConfigurationName)...)
		}
		if t.Percent < 0 || t.Percent > 100 {
			errs = append(errs, field.Invalid(ip.Child("percent"), t.Percent, "must be between 0 and 100"))
			percentsOK = false
		}
		sum += t.Percent
		if t.Name != "" {
			for _, msg := range validation.IsDNS1123Label(t.Name) {
				errs = append(errs, field.Invalid(ip.Child("name"), t.Name, "must be a DNS label (it becomes a subdomain): "+msg))
			}
			if j, dup := byName[t.Name]; dup {
				o := s.Rollout.Traffic[j]
				if o.RevisionName != t.RevisionName || o.ConfigurationName != t.ConfigurationName {
					errs = append(errs, field.Invalid(ip.Child("name"), t.Name, fmt.Sprintf(
						"the traffic targets must be unique: name %q already addresses %s at traffic[%d]; a name may repeat only for the same target",
						t.Name, o.describe(), j)))
				}
			} else {
				byName[t.Name] = i
			}
		}
	}
	if percentsOK && sum != 100 {
		errs = append(errs, field.Invalid(tp, sum, "the route must have traffic percent sum equal to 100"))
	}
	return errs
}

func (t TrafficTarget) describe() string {
	if t.RevisionName != "" {
		return fmt.Sprintf("revision %q", t.RevisionName)
	}
	return fmt.Sprintf("configuration %q", t.ConfigurationName)
}

// Validate checks a Service's rollout policy.
func (p *ServiceRollout) Validate(path *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch p.Strategy {
	case "", StrategyAutomatic, StrategyManual, StrategyCanary:
	default:
		errs = append(errs, field.NotSupported(path.Child("strategy"), p.Strategy,
			[]RolloutStrategy{StrategyAutomatic, StrategyManual, StrategyCanary}))
	}
	errs = append(errs, ValidateSteps(p.Steps, path.Child("steps"))...)
	if p.Interval != nil && p.Interval.Duration <= 0 {
		errs = append(errs, field.Invalid(path.Child("interval"), p.Interval.Duration.String(), "must be a positive duration such as 10m or 1h"))
	}
	if p.Duration != nil {
		dp := path.Child("duration")
		switch {
		case p.Duration.Duration < 0:
			errs = append(errs, field.Invalid(dp, p.Duration.Duration.String(), "must be 0s (at once) or a positive duration such as 90s or 5m"))
		case p.Duration.Duration > 0 && p.Strategy != "" && p.Strategy != StrategyAutomatic:
			errs = append(errs, field.Invalid(dp, p.Duration.Duration.String(),
				fmt.Sprintf("applies to the automatic strategy only; a %s rollout moves by its own steps", p.Strategy)))
		}
	}
	seen := map[string]bool{}
	for i, a := range p.Approvers {
		ap := path.Child("approvers").Index(i)
		if !approverRE.MatchString(a) {
			errs = append(errs, field.Invalid(ap, a, "must be a GitHub login (octocat) or a team as org/team-slug"))
		}
		key := strings.ToLower(strings.TrimPrefix(a, "@"))
		if seen[key] {
			errs = append(errs, field.Invalid(ap, a, "duplicate approver"))
		}
		seen[key] = true
	}
	if r := p.RequireChecks; r != nil && r.Names != nil {
		rp := path.Child("requireChecks")
		if len(r.Names) == 0 {
			errs = append(errs, field.Invalid(rp, "[]", "must name at least one check, or be true to require every check reported on the commit"))
		}
		names := map[string]bool{}
		for i, n := range r.Names {
			switch {
			case strings.TrimSpace(n) == "":
				errs = append(errs, field.Required(rp.Index(i), "a check run's name or a commit status's context"))
			case names[n]:
				errs = append(errs, field.Duplicate(rp.Index(i), n))
			}
			names[n] = true
		}
	}
	return errs
}

// approverRE accepts a GitHub login (alphanumerics and single inner
// hyphens, at most 39) or org/team-slug, with an optional leading @.
var approverRE = regexp.MustCompile(`^@?[A-Za-z0-9](?:-?[A-Za-z0-9]){0,38}(?:/[A-Za-z0-9][A-Za-z0-9_-]{0,99})?$`)

// ValidateSteps checks canary steps: integer percents between 1 and 100,
// strictly increasing, ending at 100.
func ValidateSteps(steps []int, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, s := range steps {
		switch {
		case s < 1 || s > 100:
			errs = append(errs, field.Invalid(path.Index(i), s, "must be between 1 and 100"))
		case i > 0 && s <= steps[i-1]:
			errs = append(errs, field.Invalid(path.Index(i), s, fmt.Sprintf("steps must strictly increase; the step before is %d", steps[i-1])))
		}
	}
	if n := len(steps); n > 0 && steps[n-1] != 100 {
		errs = append(errs, field.Invalid(path, steps, "the last step must be 100, e.g. [5, 25, 50, 100]"))
	}
	return errs
}

// Container fields that elafros owns or the seed forbids ("some fields not
// allowed, such as resources, ports").
var forbiddenContainerFields = []struct {
	name string
	set  func(*RevisionSpec) bool
	why  string
}{
	{"ports", func(s *RevisionSpec) bool { return len(s.Container.Ports) > 0 }, "elafros sets the PORT environment variable; listen on $PORT"},
	{"resources", func(s *RevisionSpec) bool {
		r := s.Container.Resources
		return len(r.Limits) > 0 || len(r.Requests) > 0 || len(r.Claims) > 0
	}, `the Elafros API leaves resources to the platform ("some fields not allowed, such as resources, ports")`},
	{"volumeMounts", func(s *RevisionSpec) bool { return len(s.Container.VolumeMounts) > 0 }, "revisions have no volumes"},
	{"volumeDevices", func(s *RevisionSpec) bool { return len(s.Container.VolumeDevices) > 0 }, "revisions have no volumes"},
	{"lifecycle", func(s *RevisionSpec) bool { return s.Container.Lifecycle != nil }, "elafros owns the instance lifecycle"},
	{"stdin", func(s *RevisionSpec) bool { return s.Container.Stdin || s.Container.StdinOnce }, "revisions serve HTTP, not a terminal"},
	{"tty", func(s *RevisionSpec) bool { return s.Container.TTY }, "revisions serve HTTP, not a terminal"},
}

func (s *RevisionSpec) validate(path *field.Path, imageRequired bool) field.ErrorList {
	var errs field.ErrorList
	cp := path.Child("container")
	img := s.Container.Image
	switch {
	case img == "" && imageRequired:
		errs = append(errs, field.Required(cp.Child("image"), "the container image to run, e.g. ghcr.io/org/app:tag (or set spec.build to build one)"))
	case img != "" && strings.ContainsAny(img, " \t\n"):
		errs = append(errs, field.Invalid(cp.Child("image"), img, "an image reference has no whitespace"))
	}
	for _, f := range forbiddenContainerFields {
		if f.set(s) {
			errs = append(errs, field.Forbidden(cp.Child(f.name), f.why))
		}
	}
	seen := map[string]int{}
	for i, e := range s.Container.Env {
		ep := cp.Child("env").Index(i)
		if e.Name == "" {
			errs = append(errs, field.Required(ep.Child("name"), "an environment variable name"))
			continue
		}
		for _, msg := range validation.IsEnvVarName(e.Name) {
			errs = append(errs, field.Invalid(ep.Child("name"), e.Name, msg))
		}
		if e.Name == "PORT" {
			errs = append(errs, field.Forbidden(ep.Child("name"), "PORT is set by elafros to the port the revision must listen on"))
		}
		if j, dup := seen[e.Name]; dup {
			errs = append(errs, field.Invalid(ep.Child("name"), e.Name, fmt.Sprintf("duplicate variable; already set at env[%d] (env is keyed by name)", j)))
		}
		seen[e.Name] = i
		if e.Value != "" && e.ValueFrom != nil {
			errs = append(errs, field.Invalid(ep, e.Name, "set value or valueFrom, not both"))
		}
	}
	switch s.ConcurrencyModel {
	case "", ConcurrencySingleThreaded, ConcurrencyMulti:
	default:
		errs = append(errs, field.NotSupported(path.Child("concurrencyModel"), s.ConcurrencyModel,
			[]ConcurrencyModel{ConcurrencySingleThreaded, ConcurrencyMulti}))
	}
	if t := s.TimeoutSeconds; t != nil && (*t < 1 || *t > MaxTimeoutSeconds) {
		errs = append(errs, field.Invalid(path.Child("timeoutSeconds"), *t, fmt.Sprintf("must be between 1 and %d seconds", MaxTimeoutSeconds)))
	}
	if s.BuildName != "" {
		for _, msg := range validation.IsDNS1123Subdomain(s.BuildName) {
			errs = append(errs, field.Invalid(path.Child("buildName"), s.BuildName, msg))
		}
	}
	if s.ServiceAccountName != "" {
		for _, msg := range validation.IsDNS1123Subdomain(s.ServiceAccountName) {
			errs = append(errs, field.Invalid(path.Child("serviceAccountName"), s.ServiceAccountName, msg))
		}
	}
	return errs
}

func validateObjectMeta(m *metav1.ObjectMeta, maxName int, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch {
	case m.Name == "" && m.GenerateName == "":
		errs = append(errs, field.Required(path.Child("name"), "a DNS label such as my-service"))
	case m.Name != "":
		errs = append(errs, validateName(path.Child("name"), m.Name, maxName)...)
	}
	if m.Namespace != "" {
		for _, msg := range validation.IsDNS1123Label(m.Namespace) {
			errs = append(errs, field.Invalid(path.Child("namespace"), m.Namespace, msg))
		}
	}
	errs = append(errs, metav1validation.ValidateLabels(m.Labels, path.Child("labels"))...)
	errs = append(errs, apivalidation.ValidateAnnotations(m.Annotations, path.Child("annotations"))...)
	return errs
}

func validateName(path *field.Path, name string, maxLen int) field.ErrorList {
	var errs field.ErrorList
	for _, msg := range validation.IsDNS1035Label(name) {
		errs = append(errs, field.Invalid(path, name, msg))
	}
	if len(errs) == 0 && len(name) > maxLen {
		errs = append(errs, field.Invalid(path, name, fmt.Sprintf("must be at most %d characters (revisions add a -00001 suffix)", maxLen)))
	}
	return errs
}

// validateRefName checks the name of a referenced object.
func validateRefName(path *field.Path, name string) field.ErrorList {
	var errs field.ErrorList
	for _, msg := range validation.IsDNS1035Label(name) {
		errs = append(errs, field.Invalid(path, name, msg))
	}
	return errs
}

// validateTemplateMeta allows only labels and annotations in a revision
// template; names and the rest are set by the system.
func validateTemplateMeta(m *metav1.ObjectMeta, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	if m.Name != "" || m.GenerateName != "" || m.Namespace != "" {
		errs = append(errs, field.Forbidden(path, "only labels and annotations may be set; revision names are generated as <configuration>-00001"))
	}
	errs = append(errs, metav1validation.ValidateLabels(m.Labels, path.Child("labels"))...)
	errs = append(errs, apivalidation.ValidateAnnotations(m.Annotations, path.Child("annotations"))...)
	for _, k := range []string{ConfigurationLabelKey, ConfigurationGenerationLabelKey} {
		if _, ok := m.Labels[k]; ok {
			errs = append(errs, field.Forbidden(path.Child("labels").Key(k), "set by the system on each revision"))
		}
	}
	return append(errs, validateTypeLabel(m.Labels, path.Child("labels"))...)
}

func validateTypeLabel(labels map[string]string, path *field.Path) field.ErrorList {
	if v, ok := labels[TypeLabelKey]; ok && v != TypeFunction && v != TypeApp {
		return field.ErrorList{field.NotSupported(path.Key(TypeLabelKey), v, []string{TypeFunction, TypeApp})}
	}
	return nil
}

// FieldErrorMessage renders a field error's body (without the path) for a
// person: what is wrong and what would be accepted.
func FieldErrorMessage(e *field.Error) string {
	switch e.Type {
	case field.ErrorTypeRequired:
		if e.Detail == "" {
			return "required"
		}
		return "required: " + e.Detail
	case field.ErrorTypeForbidden:
		return "not allowed: " + e.Detail
	case field.ErrorTypeNotSupported:
		return fmt.Sprintf("unsupported value %s; %s", quote(e.BadValue), e.Detail)
	case field.ErrorTypeInvalid, field.ErrorTypeDuplicate, field.ErrorTypeTooLong, field.ErrorTypeTooMany:
		switch {
		case e.Detail == "":
			return fmt.Sprintf("invalid value %s", quote(e.BadValue))
		case e.BadValue == nil:
			return e.Detail
		}
		return fmt.Sprintf("%s, got %s", e.Detail, quote(e.BadValue))
	default:
		return e.ErrorBody()
	}
}

func quote(v any) string {
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.String:
		return strconv.Quote(rv.String())
	case reflect.Slice:
		parts := make([]string, rv.Len())
		for i := range parts {
			parts[i] = quote(rv.Index(i).Interface())
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	return fmt.Sprint(v)
}
