package githubtest

import (
	"bytes"
	"context"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/golang-jwt/jwt/v4"
)

// maxBody is GitHub's own cap on a request body (and on a webhook payload).
const maxBody = 25 << 20

const docsURL = "https://docs.github.com/rest"

// Request is one request the server received, after it was checked.
type Request struct {
	Method, Path string
	Query        url.Values
	// Operation is GitHub's operationId, e.g. "repos/create-deployment".
	Operation string
	Body      []byte
	// Auth is the Authorization header as sent.
	Auth string
}

// Fault is an answer the server gives instead of doing the operation.
type Fault struct {
	// Operation limits the fault to one GitHub operationId; empty is any.
	Operation string
	Status    int
	Header    http.Header
	Message   string
}

// Server plays GitHub's REST API. Create it with NewServer; it is closed
// when the test ends.
type Server struct {
	// URL is the API's base URL with a trailing slash, as go-github wants.
	URL string
	// Token is a token the server accepts on repository endpoints.
	Token string

	t      testing.TB
	srv    *httptest.Server
	router routers.Router

	mu            sync.Mutex
	quiet         bool
	refusals      []string
	requests      []Request
	nextID        int64
	faults        []Fault
	latency       time.Duration
	tokens        map[string]time.Time // token → expiry; zero never expires
	appID         int64
	appKey        *rsa.PublicKey
	installations map[int64]bool
	ahead         map[string]bool // repo → default branch ahead of deployed refs
	deployments   []*Deployment
	comments      []*Comment
	permissions   map[string]map[string]string // repo → login → role name
	teams         map[string]map[string]string // org/team → login → state
	pulls         map[string]map[int]*PullRequest
	statuses      map[string]map[string][]CommitStatus
	checkRuns     map[string]map[string][]CheckRun
	deliveries    []*Delivery
	redeliveries  []int64
	onRedeliver   func(Delivery) int
	async         sync.WaitGroup
	now           func() time.Time
}

// NewServer starts a fake GitHub for t. It fails t at once if GitHub's
// description cannot be loaded.
func NewServer(t testing.TB) *Server {
	t.Helper()
	router, err := githubRouter()
	if err != nil {
		t.Fatalf("githubtest: %v", err)
	}
	s := &Server{
		t:             t,
		router:        router,
		Token:         "ghp_githubtest0000000000000000000000000",
		tokens:        map[string]time.Time{},
		installations: map[int64]bool{},
		ahead:         map[string]bool{},
		permissions:   map[string]map[string]string{},
		teams:         map[string]map[string]string{},
		pulls:         map[string]map[int]*PullRequest{},
		statuses:      map[string]map[string][]CommitStatus{},
		checkRuns:     map[string]map[string][]CheckRun{},
		nextID:        1000,
		now:           time.Now,
	}
	s.tokens[s.Token] = time.Time{}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL + "/"
	t.Cleanup(s.srv.Close)
	t.Cleanup(s.async.Wait) // runs first: redeliveries end before the server
	return s
}

// Client is an http.Client for the server (no auth of its own).
func (s *Server) Client() *http.Client { return s.srv.Client() }

// Close stops the server (it also stops when the test ends).
func (s *Server) Close() { s.srv.Close() }

// RefuseQuietly stops the server from failing the test when it refuses a
// request; for tests that send what GitHub refuses on purpose. Refusals
// are still recorded (Refusals).
func (s *Server) RefuseQuietly() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.quiet = true
}

// Refusals are the reasons of every request the server refused as GitHub
// would (unknown path, invalid parameters or body, bad credentials).
func (s *Server) Refusals() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.refusals...)
}

// Requests are the requests the server accepted as well-formed, in order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// Operations are the operationIds of Requests, in order.
func (s *Server) Operations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, len(s.requests))
	for i, r := range s.requests {
		out[i] = r.Operation
	}
	return out
}

// Inject queues faults: each is used once, by the next request whose
// operation it matches.
func (s *Server) Inject(f ...Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, f...)
}

// FailNext makes the next n requests answer status (e.g. 502) with
// GitHub's error body.
func (s *Server) FailNext(n, status int) {
	for range n {
		s.Inject(Fault{Status: status, Message: http.StatusText(status)})
	}
}

// SecondaryRateLimitNext makes the next request hit GitHub's secondary rate
// limit: 403 with Retry-After.
func (s *Server) SecondaryRateLimitNext(retryAfter time.Duration) {
	h := http.Header{}
	h.Set("Retry-After", strconv.Itoa(int(retryAfter.Round(time.Second)/time.Second)))
	s.Inject(Fault{Status: http.StatusForbidden, Header: h,
		Message: "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."})
}

// PrimaryRateLimitNext makes the next request hit the primary rate limit:
// 403 with X-RateLimit-Remaining 0 and X-RateLimit-Reset at reset.
func (s *Server) PrimaryRateLimitNext(reset time.Time) {
	h := http.Header{}
	h.Set("X-RateLimit-Limit", "5000")
	h.Set("X-RateLimit-Remaining", "0")
	h.Set("X-RateLimit-Used", "5000")
	h.Set("X-RateLimit-Reset", strconv.FormatInt(reset.Unix(), 10))
	s.Inject(Fault{Status: http.StatusForbidden, Header: h, Message: "API rate limit exceeded for installation."})
}

// SetLatency delays every answer by d (for benchmarks of callers).
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latency = d
}

// AddToken makes token valid on repository endpoints.
func (s *Server) AddToken(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens[token] = time.Time{}
}

// SetApp registers the GitHub App whose JWTs (RS256, iss = app id) the
// /app endpoints accept, and its installations.
func (s *Server) SetApp(appID int64, key *rsa.PublicKey, installations ...int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.appID, s.appKey = appID, key
	for _, id := range installations {
		s.installations[id] = true
	}
}

// InstallationTokens are the tokens issued to installations, in order.
func (s *Server) InstallationTokens() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for tok, exp := range s.tokens {
		if !exp.IsZero() {
			out = append(out, tok)
		}
	}
	return out
}

func (s *Server) id() int64 {
	s.nextID++
	return s.nextID
}

// ghError writes GitHub's error shape.
func ghError(w http.ResponseWriter, status int, message string, errs ...map[string]any) {
	body := map[string]any{"message": message, "documentation_url": docsURL, "status": strconv.Itoa(status)}
	if len(errs) > 0 {
		body["errors"] = errs
	}
	writeJSON(w, status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// refuse records a refusal, fails the test unless quiet, and answers as
// GitHub would.
func (s *Server) refuse(w http.ResponseWriter, status int, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	s.mu.Lock()
	s.refusals = append(s.refusals, msg)
	quiet := s.quiet
	s.mu.Unlock()
	if !quiet {
		s.t.Errorf("githubtest: GitHub would refuse this request: %s", msg)
	}
	switch status {
	case http.StatusNotFound:
		ghError(w, status, "Not Found")
	case http.StatusUnauthorized:
		ghError(w, status, "Bad credentials")
	default:
		ghError(w, status, "Validation Failed: "+msg,
			map[string]any{"resource": "Request", "code": "invalid", "message": msg})
	}
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		ghError(w, http.StatusBadRequest, "Problems reading the body")
		return
	}
	if len(body) > maxBody {
		s.refuse(w, http.StatusRequestEntityTooLarge, "%s %s: body over 25 MB", r.Method, r.URL.Path)
		return
	}
	s.mu.Lock()
	latency := s.latency
	s.mu.Unlock()
	if latency > 0 {
		select {
		case <-time.After(latency):
		case <-r.Context().Done():
			return
		}
	}

	if bytes.Equal(bytes.TrimSpace(body), []byte("null")) {
		// ghinstallation posts the JSON null for "no options" when it asks
		// for an installation token, and GitHub takes it as no body; the
		// description (an object) would not.
		body = nil
	}
	check := r.Clone(context.Background())
	check.Body = io.NopCloser(bytes.NewReader(body))
	route, params, err := s.router.FindRoute(check)
	if err != nil {
		s.refuse(w, http.StatusNotFound, "%s %s: not in GitHub's REST description (%v)", r.Method, r.URL.Path, err)
		return
	}
	in := &openapi3filter.RequestValidationInput{
		Request: check, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true},
	}
	if len(body) > 0 && check.Header.Get("Content-Type") == "" {
		// GitHub reads a body without a content type as JSON; the
		// validator needs to be told.
		check.Header.Set("Content-Type", "application/json")
	}
	if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
		s.refuse(w, http.StatusUnprocessableEntity, "%s %s (%s): %v", r.Method, r.URL.Path, route.Operation.OperationID, err)
		return
	}
	op := route.Operation.OperationID

	s.mu.Lock()
	s.requests = append(s.requests, Request{Method: r.Method, Path: r.URL.Path, Query: r.URL.Query(),
		Operation: op, Body: body, Auth: r.Header.Get("Authorization")})
	var fault *Fault
	for i, f := range s.faults {
		if f.Operation == "" || f.Operation == op {
			fault = &f
			s.faults = append(s.faults[:i:i], s.faults[i+1:]...)
			break
		}
	}
	s.mu.Unlock()
	if fault != nil {
		for k, v := range fault.Header {
			w.Header()[k] = v
		}
		ghError(w, fault.Status, fault.Message)
		return
	}

	if msg := s.authorize(op, r.Header.Get("Authorization"), params); msg != "" {
		s.refuse(w, http.StatusUnauthorized, "%s %s (%s): %s", r.Method, r.URL.Path, op, msg)
		return
	}
	w.Header().Set("X-RateLimit-Limit", "5000")
	w.Header().Set("X-RateLimit-Remaining", "4999")
	w.Header().Set("X-RateLimit-Reset", strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10))
	w.Header().Set("X-GitHub-Request-Id", fmt.Sprintf("GHTEST:%d", time.Now().UnixNano()))

	h, ok := handlers[op]
	if !ok {
		// In GitHub's description but not played here: say so plainly
		// rather than answer something made up.
		s.t.Errorf("githubtest: %s (%s %s) is in GitHub's description but the fake does not play it", op, r.Method, r.URL.Path)
		ghError(w, http.StatusNotImplemented, "githubtest does not play "+op)
		return
	}
	var decoded map[string]any
	if len(body) > 0 {
		_ = json.Unmarshal(body, &decoded) // validated above
	}
	rec := httptest.NewRecorder()
	h(s, rec, &call{r: r, params: params, body: decoded, raw: body})
	// The fake's own answer must be one GitHub documents, or a client
	// tested against it could rely on a shape GitHub never sends.
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: rec.Code, Header: rec.Header(),
		Options: &openapi3filter.Options{MultiError: true}}
	out.SetBodyBytes(rec.Body.Bytes())
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		s.t.Errorf("githubtest: the fake's answer to %s (%d) is not shaped as GitHub documents it: %v", op, rec.Code, err)
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}

// appOperations need the App's JWT; every other operation an installation
// or personal token.
func isAppOperation(op string) bool {
	switch op {
	case "apps/create-installation-access-token", "apps/list-webhook-deliveries",
		"apps/get-webhook-delivery", "apps/redeliver-webhook-delivery", "apps/get-authenticated",
		"apps/get-repo-installation":
		return true
	}
	return false
}

func (s *Server) authorize(op, header string, params map[string]string) string {
	scheme, cred, _ := strings.Cut(header, " ")
	if cred == "" {
		return "no Authorization header"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if isAppOperation(op) {
		if !strings.EqualFold(scheme, "Bearer") {
			return "the App's endpoints need a JWT as Bearer"
		}
		if s.appKey == nil {
			return "no GitHub App registered with the fake (SetApp)"
		}
		claims := &jwt.RegisteredClaims{}
		_, err := jwt.ParseWithClaims(cred, claims, func(tok *jwt.Token) (any, error) {
			if tok.Method.Alg() != "RS256" {
				return nil, fmt.Errorf("alg %s, GitHub accepts RS256", tok.Method.Alg())
			}
			return s.appKey, nil
		})
		if err != nil {
			return "bad JWT: " + err.Error()
		}
		if claims.Issuer != strconv.FormatInt(s.appID, 10) {
			return fmt.Sprintf("JWT issuer %q is not the app id %d", claims.Issuer, s.appID)
		}
		if claims.ExpiresAt == nil || claims.ExpiresAt.Sub(s.now()) > 10*time.Minute {
			return "a JWT must expire within 10 minutes"
		}
		if op == "apps/create-installation-access-token" {
			id, _ := strconv.ParseInt(params["installation_id"], 10, 64)
			if !s.installations[id] {
				return fmt.Sprintf("installation %d is not one of the app's", id)
			}
		}
		return ""
	}
	if !strings.EqualFold(scheme, "Bearer") && !strings.EqualFold(scheme, "token") {
		return "scheme " + scheme + " (GitHub takes token or Bearer)"
	}
	exp, ok := s.tokens[cred]
	if !ok {
		return "unknown token"
	}
	if !exp.IsZero() && s.now().After(exp) {
		return "expired installation token"
	}
	return ""
}

// call is one validated request handed to an operation's handler.
type call struct {
	r      *http.Request
	params map[string]string
	body   map[string]any
	raw    []byte
}

func (c *call) repo() string { return c.params["owner"] + "/" + c.params["repo"] }

func (c *call) int(name string) int64 {
	n, _ := strconv.ParseInt(c.params[name], 10, 64)
	return n
}

func (c *call) str(key string) string {
	v, _ := c.body[key].(string)
	return v
}

func (c *call) boolOr(key string, def bool) bool {
	if v, ok := c.body[key].(bool); ok {
		return v
	}
	return def
}

// page applies GitHub's page/per_page pagination and writes the Link
// header.
func page[T any](w http.ResponseWriter, r *http.Request, all []T) []T {
	per, _ := strconv.Atoi(r.URL.Query().Get("per_page"))
	if per <= 0 {
		per = 30
	}
	if per > 100 {
		per = 100
	}
	p, _ := strconv.Atoi(r.URL.Query().Get("page"))
	if p <= 0 {
		p = 1
	}
	start := (p - 1) * per
	if start >= len(all) {
		return []T{}
	}
	end := min(start+per, len(all))
	if end < len(all) {
		u := *r.URL
		u.Scheme, u.Host = "http", r.Host
		q := u.Query()
		q.Set("page", strconv.Itoa(p+1))
		q.Set("per_page", strconv.Itoa(per))
		u.RawQuery = q.Encode()
		w.Header().Set("Link", fmt.Sprintf("<%s>; rel=\"next\"", u.String()))
	}
	return all[start:end]
}
