package github

import (
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"
)

// RetryPolicy bounds how the transport retries.
type RetryPolicy struct {
	// Attempts is the most tries of one request, the first included.
	// Default 5.
	Attempts int
	// MaxWait bounds the total time spent waiting between tries of one
	// request; a rate limit that resets later than that is returned to
	// the caller at once rather than slept on. Default 60s.
	MaxWait time.Duration
	// Backoff is the first wait after a 5xx; it doubles each time (with
	// jitter). Default 500ms.
	Backoff time.Duration
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.Attempts <= 0 {
		p.Attempts = 5
	}
	if p.MaxWait <= 0 {
		p.MaxWait = 60 * time.Second
	}
	if p.Backoff <= 0 {
		p.Backoff = 500 * time.Millisecond
	}
	return p
}

// RetryTransport retries what GitHub asks to be retried: 5xx answers (with
// exponential backoff), secondary rate limits (403/429 with Retry-After)
// and the primary rate limit (403/429 with X-RateLimit-Remaining: 0, until
// X-RateLimit-Reset). It waits no longer in total than the policy's
// MaxWait and stops when the request's context ends.
//
// POSTs are retried on 5xx as well, as Octokit's retry plugin does: a 502
// from GitHub's front end almost always means the write did not happen,
// and the writes this project makes are safe to repeat (a sticky comment
// is found by its marker; reactions are idempotent).
type RetryTransport struct {
	Base   http.RoundTripper
	Policy RetryPolicy
	// now is time.Now; tests of the reset arithmetic replace it.
	now func() time.Time
}

// RoundTrip implements http.RoundTripper.
func (t *RetryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	base := t.Base
	if base == nil {
		base = http.DefaultTransport
	}
	now := t.now
	if now == nil {
		now = time.Now
	}
	p := t.Policy.withDefaults()
	var waited time.Duration
	backoff := p.Backoff
	for attempt := 1; ; attempt++ {
		resp, err := base.RoundTrip(req)
		if err != nil {
			return nil, err
		}
		wait, retry := retryAfter(resp.StatusCode, resp.Header, backoff, now())
		if !retry || attempt >= p.Attempts || waited+wait > p.MaxWait {
			return resp, nil
		}
		if req.Body != nil && req.GetBody == nil {
			return resp, nil // cannot send the body again
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if err := sleep(req.Context(), wait); err != nil {
			return nil, err
		}
		waited += wait
		if resp.StatusCode >= 500 {
			backoff *= 2
		}
		if req.GetBody != nil {
			body, err := req.GetBody()
			if err != nil {
				return nil, err
			}
			req = req.Clone(req.Context())
			req.Body = body
		}
	}
}

// retryAfter says whether an answer asks for a retry and after how long.
func retryAfter(status int, h http.Header, backoff time.Duration, now time.Time) (time.Duration, bool) {
	switch {
	case status >= 500:
		// Full jitter in [backoff/2, backoff): replicas that failed
		// together do not come back together.
		return backoff/2 + rand.N(backoff/2+1), true
	case status == http.StatusForbidden || status == http.StatusTooManyRequests:
		if s := h.Get("Retry-After"); s != "" {
			if n, err := strconv.Atoi(s); err == nil && n >= 0 {
				return time.Duration(n) * time.Second, true
			}
			if at, err := http.ParseTime(s); err == nil {
				return max(at.Sub(now), 0), true
			}
		}
		if h.Get("X-RateLimit-Remaining") == "0" {
			if reset, err := strconv.ParseInt(h.Get("X-RateLimit-Reset"), 10, 64); err == nil {
				// The reset is whole seconds: wait one more so the
				// next try lands after it.
				return max(time.Unix(reset, 0).Sub(now), 0) + time.Second, true
			}
		}
		if status == http.StatusTooManyRequests {
			return time.Minute, true // GitHub's advice when it says nothing
		}
	}
	return 0, false
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}
