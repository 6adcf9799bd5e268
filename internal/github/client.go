package github

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/bradleyfalzon/ghinstallation/v2"
	gh "github.com/google/go-github/v60/github"
)

// DefaultAPIURL is github.com's REST API. GitHub Enterprise Server's is
// https://HOST/api/v3 (what Actions put in GITHUB_API_URL).
const DefaultAPIURL = "https://api.github.com"

type options struct {
	apiURL    string
	transport http.RoundTripper
	retry     RetryPolicy
	observe   func(method string, status int, err error)
	userAgent string
}

// Option configures New and NewApp.
type Option func(*options)

// WithAPIURL sets the REST API's base URL (GITHUB_API_URL); empty keeps
// the default.
func WithAPIURL(u string) Option { return func(o *options) { o.apiURL = u } }

// WithTransport sets the transport under the retries (default
// http.DefaultTransport).
func WithTransport(rt http.RoundTripper) Option { return func(o *options) { o.transport = rt } }

// WithRetry sets the retry policy.
func WithRetry(p RetryPolicy) Option { return func(o *options) { o.retry = p } }

// WithObserver is called after every try that reached GitHub or failed
// (for metrics: GitHub API calls by status).
func WithObserver(f func(method string, status int, err error)) Option {
	return func(o *options) { o.observe = f }
}

// WithUserAgent sets the User-Agent GitHub sees.
func WithUserAgent(ua string) Option { return func(o *options) { o.userAgent = ua } }

func build(opts []Option) (*options, *url.URL, http.RoundTripper, error) {
	o := &options{apiURL: DefaultAPIURL, userAgent: "elafros"}
	for _, f := range opts {
		f(o)
	}
	if o.apiURL == "" {
		o.apiURL = DefaultAPIURL
	}
	u, err := url.Parse(o.apiURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, nil, nil, fmt.Errorf("GitHub API URL %q: want an absolute http(s) URL such as %s or https://HOST/api/v3", o.apiURL, DefaultAPIURL)
	}
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
	}
	base := o.transport
	if base == nil {
		base = http.DefaultTransport
	}
	if o.observe != nil {
		base = observer{base, o.observe}
	}
	return o, u, &RetryTransport{Base: base, Policy: o.retry}, nil
}

type observer struct {
	base http.RoundTripper
	f    func(string, int, error)
}

func (ob observer) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := ob.base.RoundTrip(req)
	status := 0
	if resp != nil {
		status = resp.StatusCode
	}
	ob.f(req.Method, status, err)
	return resp, err
}

// Client calls GitHub's REST API as one identity (a token, or one App
// installation).
type Client struct {
	gh *gh.Client
}

func newClient(o *options, u *url.URL, rt http.RoundTripper) *Client {
	c := gh.NewClient(&http.Client{Transport: rt})
	c.BaseURL = u
	c.UserAgent = o.userAgent
	return &Client{gh: c}
}

// New returns a client that authenticates with token (GITHUB_TOKEN, a
// personal or installation token).
func New(token string, opts ...Option) (*Client, error) {
	if token == "" {
		return nil, errors.New("GitHub token: empty; set GITHUB_TOKEN (or use a GitHub App: app id and private key)")
	}
	o, u, rt, err := build(opts)
	if err != nil {
		return nil, err
	}
	return newClient(o, u, &bearer{rt, token}), nil
}

type bearer struct {
	base  http.RoundTripper
	token string
}

func (b *bearer) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Set("Authorization", "Bearer "+b.token)
	return b.base.RoundTrip(req)
}

// App is a GitHub App: it calls the /app endpoints with its JWT and hands
// out one Client per installation, whose installation token is fetched
// and refreshed by ghinstallation.
type App struct {
	ID   int64
	o    *options
	u    *url.URL
	rt   http.RoundTripper
	apps *ghinstallation.AppsTransport
	gh   *gh.Client

	mu            sync.Mutex
	installations map[int64]*Client
}

// NewApp returns the App with id appID and its PEM private key (the file
// GitHub lets you download when you create the App).
func NewApp(appID int64, privateKeyPEM []byte, opts ...Option) (*App, error) {
	if appID <= 0 {
		return nil, fmt.Errorf("GitHub App id %d: want the App's numeric id (GITHUB_APP_ID)", appID)
	}
	if err := checkKey(privateKeyPEM); err != nil {
		return nil, err
	}
	o, u, rt, err := build(opts)
	if err != nil {
		return nil, err
	}
	atr, err := ghinstallation.NewAppsTransport(rt, appID, privateKeyPEM)
	if err != nil {
		return nil, fmt.Errorf("GitHub App private key: %w", err)
	}
	atr.BaseURL = strings.TrimSuffix(u.String(), "/")
	a := &App{ID: appID, o: o, u: u, rt: rt, apps: atr, installations: map[int64]*Client{}}
	a.gh = newClient(o, u, atr).gh
	return a, nil
}

// checkKey says plainly what is wrong with a private key file.
func checkKey(b []byte) error {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return errors.New("GitHub App private key: not PEM; want the .pem file GitHub generated for the App (-----BEGIN RSA PRIVATE KEY-----)")
	}
	if _, err := x509.ParsePKCS1PrivateKey(blk.Bytes); err == nil {
		return nil
	}
	if k, err := x509.ParsePKCS8PrivateKey(blk.Bytes); err == nil {
		if _, ok := k.(*rsa.PrivateKey); ok {
			return nil
		}
	}
	return fmt.Errorf("GitHub App private key: a PEM %q block that is not an RSA private key", blk.Type)
}

// Installation returns the client for one installation of the App (the
// installation id a webhook payload carries). Clients are cached: their
// tokens are reused until they near expiry.
func (a *App) Installation(id int64) *Client {
	a.mu.Lock()
	defer a.mu.Unlock()
	if c, ok := a.installations[id]; ok {
		return c
	}
	itr := ghinstallation.NewFromAppsTransport(a.apps, id)
	itr.BaseURL = a.apps.BaseURL
	c := newClient(a.o, a.u, itr)
	a.installations[id] = c
	return c
}

// Repo names a repository.
type Repo struct{ Owner, Name string }

func (r Repo) String() string { return r.Owner + "/" + r.Name }

// ParseRepo reads "owner/name" (GITHUB_REPOSITORY's form).
func ParseRepo(s string) (Repo, error) {
	owner, name, ok := strings.Cut(s, "/")
	if !ok || owner == "" || name == "" || strings.Contains(name, "/") {
		return Repo{}, fmt.Errorf("repository %q: want owner/name", s)
	}
	return Repo{owner, name}, nil
}

// APIError is a non-2xx answer from GitHub, with its status and message.
type APIError struct {
	Op      string
	Status  int
	Message string
	err     error
}

func (e *APIError) Error() string {
	if e.Status == 0 {
		return fmt.Sprintf("GitHub %s: %v", e.Op, e.err)
	}
	return fmt.Sprintf("GitHub %s: %d %s", e.Op, e.Status, e.Message)
}

func (e *APIError) Unwrap() error { return e.err }

// IsNotFound says err is GitHub's 404.
func IsNotFound(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status == http.StatusNotFound
}

// wrap turns go-github's errors into APIError naming the operation.
func wrap(op string, resp *gh.Response, err error) error {
	if err == nil {
		return nil
	}
	ae := &APIError{Op: op, err: err}
	var er *gh.ErrorResponse
	var rl *gh.RateLimitError
	var arl *gh.AbuseRateLimitError
	switch {
	case errors.As(err, &er):
		ae.Status, ae.Message = er.Response.StatusCode, er.Message
		for _, e := range er.Errors {
			if e.Message != "" {
				ae.Message += "; " + e.Message
			} else if e.Field != "" {
				ae.Message += fmt.Sprintf("; %s %s", e.Field, e.Code)
			}
		}
	case errors.As(err, &rl):
		ae.Status, ae.Message = rl.Response.StatusCode, fmt.Sprintf("rate limit exceeded until %s", rl.Rate.Reset.Format(time.RFC3339))
	case errors.As(err, &arl):
		ae.Status, ae.Message = arl.Response.StatusCode, arl.Message
	case resp != nil && resp.Response != nil:
		ae.Status, ae.Message = resp.StatusCode, err.Error()
	}
	return ae
}
