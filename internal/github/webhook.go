package github

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// MaxWebhookBody is GitHub's own cap on a webhook payload (25 MB).
const MaxWebhookBody = 25 << 20

// The ways a webhook delivery is refused. Callers branch on them with
// errors.Is; WebhookStatus maps them to the HTTP answer.
var (
	ErrNoSignature  = errors.New("webhook: no X-Hub-Signature-256 header")
	ErrBadSignature = errors.New("webhook: X-Hub-Signature-256 does not match the body under any configured secret")
	ErrBodyTooLarge = errors.New("webhook: body over the limit")
	ErrNoEvent      = errors.New("webhook: no X-GitHub-Event header")
)

// WebhookStatus is the HTTP status to answer a refused delivery with:
// 401 for signatures, 413 for size, 400 otherwise.
func WebhookStatus(err error) int {
	switch {
	case errors.Is(err, ErrNoSignature), errors.Is(err, ErrBadSignature):
		return http.StatusUnauthorized
	case errors.Is(err, ErrBodyTooLarge):
		return http.StatusRequestEntityTooLarge
	}
	return http.StatusBadRequest
}

// Verifier checks webhook deliveries. Unlike go-github's ValidatePayload,
// it cannot be built without a secret, so an empty secret can never mean
// "skip the check".
type Verifier struct {
	secrets [][]byte
	max     int64
}

// NewVerifier takes one secret, or two while a secret is rotated (both are
// valid until the old one is removed). maxBody <= 0 means GitHub's 25 MB.
func NewVerifier(maxBody int64, secrets ...[]byte) (*Verifier, error) {
	var keep [][]byte
	for _, s := range secrets {
		if len(s) > 0 {
			keep = append(keep, s)
		}
	}
	if len(keep) == 0 {
		return nil, errors.New("webhook secret: none set; set GITHUB_WEBHOOK_SECRET (or --webhook-secret-file) to the App's webhook secret — deliveries are never accepted unsigned")
	}
	if len(keep) > 2 {
		return nil, fmt.Errorf("webhook secrets: %d given; at most two (the new and the old while rotating)", len(keep))
	}
	if maxBody <= 0 {
		maxBody = MaxWebhookBody
	}
	return &Verifier{secrets: keep, max: maxBody}, nil
}

// Webhook is a verified delivery.
type Webhook struct {
	Event    string // X-GitHub-Event
	Delivery string // X-GitHub-Delivery (a redelivery keeps it)
	Body     []byte
}

// Verify reads r's body (at most the cap) and checks its signature in
// constant time against each secret.
func (v *Verifier) Verify(r *http.Request) (*Webhook, error) {
	if r.ContentLength > v.max {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrBodyTooLarge, r.ContentLength, v.max)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, v.max+1))
	if err != nil {
		return nil, fmt.Errorf("webhook: reading the body: %w", err)
	}
	if int64(len(body)) > v.max {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrBodyTooLarge, v.max)
	}
	sig := r.Header.Get("X-Hub-Signature-256")
	if sig == "" {
		return nil, ErrNoSignature
	}
	hexSig, ok := strings.CutPrefix(sig, "sha256=")
	got, err := hex.DecodeString(hexSig)
	if !ok || err != nil || len(got) != sha256.Size {
		return nil, fmt.Errorf("%w (want sha256=<64 hex digits>)", ErrBadSignature)
	}
	match := false
	for _, s := range v.secrets {
		m := hmac.New(sha256.New, s)
		m.Write(body)
		// Every secret is tried, match or not, so the time taken does
		// not tell which one matched.
		if hmac.Equal(m.Sum(nil), got) {
			match = true
		}
	}
	if !match {
		return nil, ErrBadSignature
	}
	ev := r.Header.Get("X-GitHub-Event")
	if ev == "" {
		return nil, ErrNoEvent
	}
	return &Webhook{Event: ev, Delivery: r.Header.Get("X-GitHub-Delivery"), Body: body}, nil
}
