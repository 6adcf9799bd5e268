package deploy_test

import (
	"strings"
	"testing"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/deploy"
	"github.com/elafros/elafros/internal/testutil"
)

func TestRenderTrafficGolden(t *testing.T) {
	before := []v1alpha1.TrafficTarget{tt("current", "web-00001", 100), tt("next", "web-00002", 0), tt("pr-42", "web-pr-42-00001", 0)}
	after := []v1alpha1.TrafficTarget{tt("current", "web-00001", 75), tt("next", "web-00002", 25), tt("pr-42", "web-pr-42-00001", 0), {ConfigurationName: "web", Percent: 0}}
	url := func(target string) string { return deploy.TargetURL("https", "web.default.example.com", "", target) }
	cases := []struct {
		name string
		f    deploy.Format
		v    deploy.TrafficView
	}{
		{"move.txt", deploy.Text, deploy.TrafficView{Title: "web", Before: before, After: after, URL: url}},
		{"move.md", deploy.Markdown, deploy.TrafficView{Title: "web", Before: before, After: after, URL: url}},
		{"plain.txt", deploy.Text, deploy.TrafficView{Title: "web", After: after}},
		{"plain.md", deploy.Markdown, deploy.TrafficView{Title: "web | pipe", After: []v1alpha1.TrafficTarget{tt("", "a|b", 100)}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var b strings.Builder
			if err := deploy.RenderTraffic(&b, c.f, c.v); err != nil {
				t.Fatal(err)
			}
			testutil.Golden(t, "testdata/traffic-"+c.name, b.String())
		})
	}
}

func TestSplit(t *testing.T) {
	got := deploy.Split([]v1alpha1.TrafficTarget{tt("current", "a-00001", 95), {ConfigurationName: "a", Percent: 5}})
	if want := "current=a-00001:95% latest(a):5%"; got != want {
		t.Errorf("Split = %q, want %q", got, want)
	}
}
