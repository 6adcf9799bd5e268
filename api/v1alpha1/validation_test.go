package v1alpha1

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func route(targets ...TrafficTarget) *Route {
	return &Route{
		ObjectMeta: metav1.ObjectMeta{Name: "my-service", Namespace: "default"},
		Spec:       RouteSpec{Rollout: RouteRollout{Traffic: targets}},
	}
}

func rev(name string, pct int, tname string) TrafficTarget {
	return TrafficTarget{RevisionName: name, Percent: pct, Name: tname}
}

func TestRouteValidate(t *testing.T) {
	tests := []struct {
		name  string
		route *Route
		want  []string // substrings, one per expected error, in order
	}{
		{"seed scenario 2", route(TrafficTarget{ConfigurationName: "my-service", Percent: 100}), nil},
		{"seed current/next at 0", route(rev("def", 100, "current"), rev("ghi", 0, "next")), nil},
		{"seed finish: one revision under two names", route(rev("ghi", 100, "current"), rev("ghi", 0, "next")), nil},
		{"same name, same target", route(rev("a", 50, "x"), rev("a", 50, "x")), nil},
		{"empty", route(), []string{"spec.rollout.traffic: Required value"}},
		{"sum 90", route(rev("a", 45, ""), rev("b", 45, "")), []string{"traffic percent sum equal to 100"}},
		{"sum 110", route(rev("a", 60, ""), rev("b", 50, "")), []string{"traffic percent sum equal to 100"}},
		{"negative", route(rev("a", -1, ""), rev("b", 101, "")), []string{"traffic[0].percent", "traffic[1].percent"}},
		{"neither", route(TrafficTarget{Percent: 100}), []string{"exactly one of revisionName or configurationName"}},
		{"both", route(TrafficTarget{RevisionName: "a", ConfigurationName: "c", Percent: 100}), []string{"exactly one of revisionName or configurationName"}},
		{"name clash", route(rev("a", 50, "next"), rev("b", 50, "next")), []string{"the traffic targets must be unique"}},
		{"name not a label", route(rev("a", 100, "Next")), []string{"traffic[0].name"}},
		{"revision name not a label", route(rev("a_b", 100, "")), []string{"traffic[0].revisionName"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			errs := tc.route.Validate()
			if len(errs) != len(tc.want) {
				t.Fatalf("got %d errors %v, want %d", len(errs), errs, len(tc.want))
			}
			for i, w := range tc.want {
				if !strings.Contains(errs[i].Error(), w) {
					t.Errorf("error %d = %q, want it to contain %q", i, errs[i].Error(), w)
				}
			}
		})
	}
}

// TestRouteValidateProperty checks, over random traffic lists, that
// validation accepts exactly the splits that keep the invariants: every
// percent in 0..100, a total of 100, one target kind per entry, and a name
// never shared by two different targets.
func TestRouteValidateProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	names := []string{"", "", "current", "next", "pr-42"}
	revs := []string{"a", "b", "c"}
	accepted := 0
	for i := 0; i < 20000; i++ {
		n := 1 + r.IntN(4)
		var ts []TrafficTarget
		for j := 0; j < n; j++ {
			t := TrafficTarget{Name: names[r.IntN(len(names))], Percent: r.IntN(130) - 10}
			if r.IntN(10) == 0 {
				t.Percent = 100 - sumOf(ts)
			}
			switch r.IntN(8) {
			case 0:
			case 1:
				t.RevisionName, t.ConfigurationName = revs[r.IntN(3)], "cfg"
			case 2, 3:
				t.ConfigurationName = "cfg"
			default:
				t.RevisionName = revs[r.IntN(3)]
			}
			ts = append(ts, t)
		}
		errs := route(ts...).Validate()
		if want := invariantsHold(ts); want != (len(errs) == 0) {
			t.Fatalf("traffic %+v: invariants hold = %v, but errors = %v", ts, want, errs)
		}
		if len(errs) == 0 {
			accepted++
		}
	}
	if accepted < 100 {
		t.Fatalf("only %d random splits were valid; the generator does not exercise acceptance", accepted)
	}
}

func sumOf(ts []TrafficTarget) int {
	s := 0
	for _, t := range ts {
		s += t.Percent
	}
	return s
}

// invariantsHold is an independent statement of the rules.
func invariantsHold(ts []TrafficTarget) bool {
	target := map[string]string{}
	for _, t := range ts {
		if t.Percent < 0 || t.Percent > 100 || (t.RevisionName == "") == (t.ConfigurationName == "") {
			return false
		}
		id := "r:" + t.RevisionName + "c:" + t.ConfigurationName
		if t.Name != "" {
			if prev, ok := target[t.Name]; ok && prev != id {
				return false
			}
			target[t.Name] = id
		}
	}
	return sumOf(ts) == 100
}

func TestValidateSteps(t *testing.T) {
	tests := []struct {
		steps []int
		ok    bool
	}{
		{nil, true}, {[]int{100}, true}, {[]int{5, 25, 50, 100}, true}, {[]int{1, 2, 3, 100}, true},
		{[]int{5, 5, 100}, false}, {[]int{50, 25, 100}, false}, {[]int{5, 25, 50}, false},
		{[]int{0, 100}, false}, {[]int{5, 101}, false}, {[]int{-5, 100}, false},
	}
	for _, tc := range tests {
		if got := len(ValidateSteps(tc.steps, field.NewPath("steps"))) == 0; got != tc.ok {
			t.Errorf("ValidateSteps(%v) ok = %v, want %v", tc.steps, got, tc.ok)
		}
	}
}

func TestDefaults(t *testing.T) {
	fn := &Configuration{ObjectMeta: metav1.ObjectMeta{Name: "f"}}
	fn.Spec.RevisionTemplate.Labels = map[string]string{TypeLabelKey: TypeFunction}
	fn.Spec.RevisionTemplate.Spec.Container.Image = "img"
	fn.SetDefaults()
	s := fn.Spec.RevisionTemplate.Spec
	if fn.Namespace != DefaultNamespace || s.ConcurrencyModel != ConcurrencySingleThreaded ||
		*s.TimeoutSeconds != DefaultTimeoutSeconds || s.Container.Name != DefaultContainerName {
		t.Errorf("function defaults: ns %q model %q timeout %d container %q", fn.Namespace, s.ConcurrencyModel, *s.TimeoutSeconds, s.Container.Name)
	}

	app := &Service{ObjectMeta: metav1.ObjectMeta{Name: "a", Namespace: "prod"}}
	app.Spec.RevisionTemplate.Spec.Container = corev1.Container{Image: "img"}
	app.Spec.Rollout.Strategy = StrategyCanary
	app.SetDefaults()
	if app.Namespace != "prod" || app.Spec.RevisionTemplate.Spec.ConcurrencyModel != ConcurrencyMulti {
		t.Errorf("app defaults: ns %q model %q", app.Namespace, app.Spec.RevisionTemplate.Spec.ConcurrencyModel)
	}
	if len(app.Spec.Rollout.Steps) != 4 || app.Spec.Rollout.Interval.Duration != DefaultCanaryInterval || !*app.Spec.Rollout.Previews {
		t.Errorf("canary defaults: %+v", app.Spec.Rollout)
	}
	if errs := app.Validate(); len(errs) > 0 {
		t.Errorf("defaulted service does not validate: %v", errs)
	}

	built := &Configuration{ObjectMeta: metav1.ObjectMeta{Name: "b"}}
	built.Spec.Build = &BuildSpec{Template: TemplateInstantiationSpec{Name: "go", Arguments: []ArgumentSpec{{Name: ArgImage, Value: "reg/app"}}}}
	built.SetDefaults()
	if got := built.Spec.RevisionTemplate.Spec.Container.Image; got != "reg/app" {
		t.Errorf("image from _IMAGE = %q", got)
	}
}

func TestConditionsSet(t *testing.T) {
	var cs Conditions
	t0 := metav1.Unix(100, 0)
	t1 := metav1.Unix(200, 0)
	if !cs.Set(Condition{Type: ConditionReady, Status: corev1.ConditionFalse, Message: MessageStartingInstances}, t0) {
		t.Fatal("first set reported no change")
	}
	if cs.Set(Condition{Type: ConditionReady, Status: corev1.ConditionFalse, Message: MessageStartingInstances}, t1) {
		t.Error("re-setting an unchanged condition reported a change")
	}
	cs.Set(Condition{Type: ConditionReady, Status: corev1.ConditionFalse, Message: "still starting"}, t1)
	if !cs.Get(ConditionReady).LastTransitionTime.Equal(&t0) {
		t.Error("a message change moved the transition time")
	}
	cs.Set(Condition{Type: ConditionReady, Status: corev1.ConditionTrue}, t1)
	if !cs.IsTrue(ConditionReady) || !cs.Get(ConditionReady).LastTransitionTime.Equal(&t1) {
		t.Errorf("status change: %+v", cs)
	}
	if !cs.Remove(ConditionReady) || cs.Get(ConditionReady) != nil {
		t.Error("remove")
	}
}

func TestConditionFailed(t *testing.T) {
	for _, tc := range []struct {
		c    *Condition
		want bool
	}{
		{nil, false},
		{&Condition{Status: corev1.ConditionTrue}, false},
		{&Condition{Status: corev1.ConditionFalse, Reason: ReasonDeploying, Message: MessageStartingInstances}, false},
		{&Condition{Status: corev1.ConditionFalse, Reason: ReasonBuilding}, false},
		{&Condition{Status: corev1.ConditionFalse}, false},
		{&Condition{Status: corev1.ConditionUnknown, Reason: ReasonContainerMissing}, false},
		{&Condition{Status: corev1.ConditionFalse, Reason: ReasonContainerMissing}, true},
		{&Condition{Status: corev1.ConditionFalse, Reason: "ExitCode:127"}, true},
		{&Condition{Status: corev1.ConditionFalse, Reason: ReasonProgressDeadlineExceeded}, true},
	} {
		if got := tc.c.Failed(); got != tc.want {
			t.Errorf("%+v.Failed() = %v, want %v", tc.c, got, tc.want)
		}
	}
}

// requireChecks reads as written (true, false or names), writes back the
// same, and refuses anything else with what it accepts.
func TestRequiredChecks(t *testing.T) {
	tests := []struct {
		json    string
		want    *RequiredChecks
		invalid string // the validation error, if any
		bad     bool   // not even decoded
	}{
		{json: `true`, want: &RequiredChecks{All: true}},
		{json: `false`, want: &RequiredChecks{}},
		{json: `["test","lint"]`, want: &RequiredChecks{Names: []string{"test", "lint"}}},
		{json: `[]`, want: &RequiredChecks{Names: []string{}}, invalid: "must name at least one check"},
		{json: `["test","test"]`, want: &RequiredChecks{Names: []string{"test", "test"}}, invalid: "Duplicate value"},
		{json: `[""]`, want: &RequiredChecks{Names: []string{""}}, invalid: "Required value"},
		{json: `"yes"`, bad: true},
		{json: `5`, bad: true},
		{json: `[1]`, bad: true},
		{json: `{"all":true}`, bad: true},
	}
	for _, tc := range tests {
		t.Run(tc.json, func(t *testing.T) {
			var got RequiredChecks
			err := got.UnmarshalJSON([]byte(tc.json))
			if tc.bad {
				if err == nil || !strings.Contains(err.Error(), "must be true") || !strings.Contains(err.Error(), "list of check names") {
					t.Fatalf("decoded %+v, err %v: want a refusal saying what is accepted", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, &got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			back, err := got.MarshalJSON()
			if err != nil || string(back) != tc.json {
				t.Errorf("written back as %s (%v), want %s", back, err, tc.json)
			}
			p := ServiceRollout{RequireChecks: &got}
			errs := p.Validate(field.NewPath("spec", "rollout"))
			switch {
			case tc.invalid == "" && len(errs) > 0:
				t.Errorf("refused: %v", errs)
			case tc.invalid != "" && (len(errs) == 0 || !strings.Contains(errs.ToAggregate().Error(), tc.invalid) ||
				!strings.Contains(errs.ToAggregate().Error(), "spec.rollout.requireChecks")):
				t.Errorf("errors %v, want one at spec.rollout.requireChecks saying %q", errs, tc.invalid)
			}
		})
	}
}
