package action

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/elafros/elafros/internal/client"
	"github.com/elafros/elafros/internal/deploy"
	"github.com/elafros/elafros/internal/kube"
	"github.com/elafros/elafros/internal/reconcile"
	"github.com/elafros/elafros/internal/store"
)

// backend is where the action deploys: an elafros API (elafros serve, which
// reconciles by itself) or a cluster, where the action runs the bundled
// reconciler while it waits, so no controller needs to be installed.
type backend struct {
	store store.Store
	// registry is the default image destination (the server's own).
	registry string
	// scheme and port make URLs of route domains.
	scheme, port string
	// reconcile runs the bundled reconciler until the returned stop is
	// called (nil for a server, which reconciles itself).
	reconcile func(ctx context.Context) (stop func(), err error)
	// events records traffic moves as Kubernetes Events (a cluster only).
	events deploy.EventSink
	where  string
}

func connect(ctx context.Context, in Inputs, kubeconfig string, logger *slog.Logger) (*backend, error) {
	if in.Server != "" {
		st, err := client.ForServer(in.Server)
		if err != nil {
			return nil, err
		}
		b := &backend{store: st, scheme: "http", where: "elafros API " + in.Server}
		info, err := serverInfo(ctx, in.Server)
		if err != nil {
			return nil, fmt.Errorf("input server: nothing answers as an elafros API at %s: %w", in.Server, err)
		}
		b.registry, b.port = info["registry"], info["routerPort"]
		return b, nil
	}
	if kubeconfig == "" {
		return nil, errors.New("no backend: set the server input (an elafros API) or the kubeconfig input (a cluster), or set KUBECONFIG in an earlier step")
	}
	cfg, err := client.Kubeconfig(kubeconfig, in.Context)
	if err != nil {
		return nil, fmt.Errorf("input kubeconfig: %w", err)
	}
	st, err := client.New(cfg)
	if err != nil {
		return nil, err
	}
	b := &backend{store: st, scheme: "http", where: "cluster " + cfg.Host}
	ev, err := kube.NewEvents(cfg, "elafros-action")
	if err != nil {
		return nil, err
	}
	b.events = ev
	b.reconcile = func(ctx context.Context) (func(), error) {
		gw, err := kube.ParseGateway(in.Gateway)
		if err != nil {
			return nil, fmt.Errorf("input gateway %w", err)
		}
		rctx, cancel := context.WithCancel(ctx)
		r, err := kube.NewReconciler(rctx, cfg, kube.ReconcilerOptions{
			Traffic: kube.TrafficOptions{Gateway: gw}, Namespace: in.Namespace,
			Reconcile: reconcile.Options{DomainSuffix: in.DomainSuffix},
		})
		if err != nil {
			cancel()
			return nil, err
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = r.Run(rctx, reconcile.RunOptions{Logger: logger, Notify: r.Notify, Resync: 30 * time.Second})
		}()
		return func() { cancel(); <-done }, nil
	}
	return b, nil
}

// serverInfo reads what elafros serve publishes at /version.
func serverInfo(ctx context.Context, server string) (map[string]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(server, "/")+"/version", nil)
	if err != nil {
		return nil, err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /version: %s", res.Status)
	}
	info := map[string]string{}
	if err := json.NewDecoder(io.LimitReader(res.Body, 1<<16)).Decode(&info); err != nil {
		return nil, fmt.Errorf("GET /version: %w", err)
	}
	return info, nil
}
