package bot

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/elafros/elafros/internal/github/githubtest"
	"github.com/elafros/elafros/internal/testutil"
)

func TestParseConfig(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	keyFile := filepath.Join(dir, "key.pem")
	_ = os.WriteFile(secretFile, []byte("from-file\n"), 0o600)
	_ = os.WriteFile(keyFile, []byte("-----BEGIN RSA PRIVATE KEY-----\n-----END RSA PRIVATE KEY-----\n"), 0o600)
	env := func(kv ...string) func(string) string {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) string { return m[k] }
	}
	tests := []struct {
		name    string
		args    []string
		env     func(string) string
		wantErr string
		check   func(t *testing.T, c Config)
	}{
		{"no secret", nil, env("GITHUB_TOKEN", "t"), "GITHUB_WEBHOOK_SECRET", nil},
		{"no credentials", nil, env("GITHUB_WEBHOOK_SECRET", "s"), "GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY_FILE", nil},
		{"app id without key", nil, env("GITHUB_WEBHOOK_SECRET", "s", "GITHUB_APP_ID", "12"), "GITHUB_APP_PRIVATE_KEY_FILE is not", nil},
		{"app id not a number", nil, env("GITHUB_WEBHOOK_SECRET", "s", "GITHUB_APP_ID", "elafros"), "numeric id", nil},
		{"bad server", []string{"--server", "localhost:7070"}, env("GITHUB_WEBHOOK_SECRET", "s", "GITHUB_TOKEN", "t"), "want a URL", nil},
		{"argument", []string{"serve"}, env("GITHUB_WEBHOOK_SECRET", "s", "GITHUB_TOKEN", "t"), `unexpected argument "serve"`, nil},
		{"unknown flag", []string{"--port", "1"}, env("GITHUB_WEBHOOK_SECRET", "s", "GITHUB_TOKEN", "t"), "flags: --addr", nil},
		{"token", nil, env("GITHUB_WEBHOOK_SECRET", "s", "GITHUB_WEBHOOK_SECRET_PREVIOUS", "old", "GITHUB_TOKEN", "t", "GITHUB_API_URL", "https://ghe.example.com/api/v3"), "",
			func(t *testing.T, c Config) {
				if c.Token != "t" || string(c.WebhookSecrets[0]) != "s" || string(c.WebhookSecrets[1]) != "old" || c.APIURL != "https://ghe.example.com/api/v3" || c.Addr != ":8080" {
					t.Errorf("%+v", c)
				}
			}},
		{"app and secret file", []string{"--webhook-secret-file", secretFile, "--kubeconfig", "/k", "--namespace", "team", "--gateway", "infra/public"},
			env("GITHUB_APP_ID", "12", "GITHUB_APP_PRIVATE_KEY_FILE", keyFile), "",
			func(t *testing.T, c Config) {
				if c.AppID != 12 || len(c.AppKey) == 0 || string(c.WebhookSecrets[0]) != "from-file" || c.Kubeconfig != "/k" || c.Namespace != "team" {
					t.Errorf("%+v", c)
				}
			}},
		// On a cluster: the journal and Lease in the pod's namespace, the
		// reconciler on by default (so it needs its Gateway).
		{"cluster defaults", []string{"--in-cluster", "--gateway", "infra/public:http"}, env("GITHUB_WEBHOOK_SECRET", "s", "GITHUB_TOKEN", "t", "POD_NAMESPACE", "bots", "POD_NAME", "bot-1"), "",
			func(t *testing.T, c Config) {
				if c.JournalNamespace != "bots" || c.Identity != "bot-1" || c.Lease != "elafros-bot" || !c.Reconcile || c.DomainSuffix != "example.com" {
					t.Errorf("%+v", c)
				}
			}},
		{"cluster without reconciler", []string{"--context", "prod", "--reconcile=false"}, env("GITHUB_WEBHOOK_SECRET", "s", "GITHUB_TOKEN", "t"), "",
			func(t *testing.T, c Config) {
				if c.Reconcile || c.JournalNamespace != "elafros-system" {
					t.Errorf("%+v", c)
				}
			}},
		{"cluster without gateway", []string{"--in-cluster"}, env("GITHUB_WEBHOOK_SECRET", "s", "GITHUB_TOKEN", "t"), "--gateway: the bundled reconciler needs the Gateway", nil},
		{"bad gateway", []string{"--in-cluster", "--gateway", "public"}, env("GITHUB_WEBHOOK_SECRET", "s", "GITHUB_TOKEN", "t"), `--gateway "public": want NAMESPACE/NAME`, nil},
		{"empty domain suffix", []string{"--in-cluster", "--gateway", "infra/public", "--domain-suffix", ""}, env("GITHUB_WEBHOOK_SECRET", "s", "GITHUB_TOKEN", "t"), "--domain-suffix must not be empty", nil},
		{"journal file on a cluster", []string{"--in-cluster", "--gateway", "infra/public", "--journal", "/var/j.db"}, env("GITHUB_WEBHOOK_SECRET", "s", "GITHUB_TOKEN", "t"), "on a cluster the journal is ConfigMaps", nil},
		{"cluster flag without a cluster", []string{"--gateway", "infra/public"}, env("GITHUB_WEBHOOK_SECRET", "s", "GITHUB_TOKEN", "t"), "--gateway is for a cluster", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseConfig(tc.args, tc.env)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want one naming %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestMainServesAndStops(t *testing.T) {
	gh := githubtest.NewServer(t)
	env := map[string]string{"GITHUB_WEBHOOK_SECRET": "s", "GITHUB_TOKEN": gh.Token, "GITHUB_API_URL": gh.URL}
	var stderr syncBuffer
	ctx, cancel := context.WithCancel(t.Context())
	code := make(chan int, 1)
	go func() {
		code <- Main(ctx, []string{"--addr", "127.0.0.1:0", "--journal", filepath.Join(t.TempDir(), "j.db")},
			func(k string) string { return env[k] }, &stderr)
	}()
	addr := regexp.MustCompile(`addr=(127\.0\.0\.1:\d+)`)
	t.Cleanup(cancel)
	testutil.EventuallyEvery(t, 20*time.Second, 10*time.Millisecond, "the bot to log its address", func() (bool, string) {
		return addr.FindStringSubmatch(stderr.String()) != nil, "its log: " + stderr.String()
	})
	base := "http://" + addr.FindStringSubmatch(stderr.String())[1]
	for path, want := range map[string]int{"/healthz": 200, "/metrics": 200} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s: %d", path, resp.StatusCode)
		}
	}
	resp, err := http.Post(base+"/webhook", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("unsigned delivery: %d, want 401", resp.StatusCode)
	}
	cancel()
	select {
	case c := <-code:
		if c != 0 {
			t.Errorf("exit code %d: %s", c, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the bot did not stop")
	}
}
