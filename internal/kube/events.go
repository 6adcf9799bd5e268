package kube

import (
	"context"
	"fmt"
	"os"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/store"
)

// Events writes Kubernetes Events about elafros objects (core/v1, which
// "kubectl describe" and "kubectl get events" show), synchronously, so a
// short-lived process such as the Action has written its event before it
// exits. It is the cluster's deploy.EventSink.
type Events struct {
	cs        kubernetes.Interface
	component string
	instance  string
	now       func() time.Time
}

// NewEvents returns Events written as component (e.g. "elafros-action").
func NewEvents(cfg *rest.Config, component string) (*Events, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("events client: %w", err)
	}
	host, _ := os.Hostname()
	return &Events{cs: cs, component: component, instance: component + "-" + host, now: time.Now}, nil
}

// Event records one event on o.
func (e *Events) Event(ctx context.Context, o store.Object, eventType, reason, message string) error {
	kind := store.KindOf(o)
	now := metav1.NewTime(e.now())
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{GenerateName: o.GetName() + ".", Namespace: o.GetNamespace()},
		InvolvedObject: corev1.ObjectReference{
			APIVersion: v1alpha1.SchemeGroupVersion.String(), Kind: string(kind),
			Namespace: o.GetNamespace(), Name: o.GetName(), UID: o.GetUID(), ResourceVersion: o.GetResourceVersion(),
		},
		Type: eventType, Reason: reason, Message: message, Count: 1,
		FirstTimestamp: now, LastTimestamp: now,
		Source:              corev1.EventSource{Component: e.component},
		ReportingController: v1alpha1.GroupName + "/" + e.component, ReportingInstance: e.instance,
	}
	if _, err := e.cs.CoreV1().Events(o.GetNamespace()).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("recording event %s on %s %s/%s: %w", reason, kind, o.GetNamespace(), o.GetName(), err)
	}
	return nil
}
