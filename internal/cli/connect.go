package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/user"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/client"
	"github.com/elafros/elafros/internal/deploy"
	"github.com/elafros/elafros/internal/kube"
	"github.com/elafros/elafros/internal/store"
)

// DefaultServer is where the CLI finds elafros serve's API.
const DefaultServer = "http://127.0.0.1:7070"

// target is how a command reaches the API: elafros serve (default) or a
// cluster through a kubeconfig context.
type target struct {
	server, kubeconfig, context, namespace string
	errOut                                 io.Writer // for warnings
}

func (t *target) flags(cmd *cobra.Command) {
	def := os.Getenv("ELAFROS_SERVER")
	if def == "" {
		def = DefaultServer
	}
	cmd.PersistentFlags().StringVar(&t.server, "server", def, "the elafros serve API to talk to ($ELAFROS_SERVER)")
	cmd.PersistentFlags().StringVar(&t.kubeconfig, "kubeconfig", "", "talk to a Kubernetes cluster through this kubeconfig instead of elafros serve")
	cmd.PersistentFlags().StringVar(&t.context, "context", "", "the kubeconfig context to use (implies a cluster)")
	cmd.PersistentFlags().StringVarP(&t.namespace, "namespace", "n", v1alpha1.DefaultNamespace, "namespace")
}

func (t *target) cluster() bool { return t.kubeconfig != "" || t.context != "" }

func (t *target) store() (store.Store, error) {
	if t.cluster() {
		return client.ForKubeconfig(t.kubeconfig, t.context)
	}
	if !strings.HasPrefix(t.server, "http://") && !strings.HasPrefix(t.server, "https://") {
		return nil, fmt.Errorf("--server %q: want a URL such as %s", t.server, DefaultServer)
	}
	return client.ForServer(t.server)
}

func (t *target) deployClient() (*deploy.Client, error) {
	s, err := t.store()
	if err != nil {
		return nil, err
	}
	opts := []deploy.Option{deploy.WithActor(localActor(), "elafros CLI")}
	if t.cluster() {
		cfg, err := client.Kubeconfig(t.kubeconfig, t.context)
		if err != nil {
			return nil, err
		}
		ev, err := kube.NewEvents(cfg, "elafros-cli")
		if err != nil {
			return nil, err
		}
		opts = append(opts, deploy.WithEvents(ev, func(err error) {
			if t.errOut != nil {
				fmt.Fprintf(t.errOut, "warning: %v\n", err)
			}
		}))
	}
	return deploy.New(s, t.namespace, opts...), nil
}

// routerPort asks elafros serve where its router listens, so that URLs
// printed for a person work as they are ("" for a cluster).
func (t *target) routerPort() string {
	if t.cluster() {
		return ""
	}
	c := http.Client{Timeout: 2 * time.Second}
	res, err := c.Get(strings.TrimSuffix(t.server, "/") + "/version")
	if err != nil {
		return ""
	}
	defer res.Body.Close()
	var v map[string]string
	if err := json.NewDecoder(io.LimitReader(res.Body, 1<<16)).Decode(&v); err != nil {
		return ""
	}
	return v["routerPort"]
}

func (t *target) url(domain string) string {
	if domain == "" {
		return ""
	}
	if p := t.routerPort(); p != "" && p != "80" {
		return "http://" + domain + ":" + p
	}
	return "http://" + domain
}

// explain turns an unreachable default server into an instruction.
func (t *target) explain(err error) error {
	if client.IsUnreachable(err) && !t.cluster() {
		return fmt.Errorf("%w\nnothing answers at %s: start it with \"elafros serve\" (or pass --server, or --context for a cluster)", err, t.server)
	}
	return err
}

// localActor names the person running the CLI in the audit history.
func localActor() string {
	if u := os.Getenv("GITHUB_ACTOR"); u != "" {
		return u
	}
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return "unknown"
}
