package githubtest

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"os"
	"testing"
)

// Signature is X-Hub-Signature-256 for body: "sha256=" and the hex
// HMAC-SHA256 of the raw body under secret, as GitHub computes it.
func Signature(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// legacySignature is the SHA-1 X-Hub-Signature GitHub still sends.
func legacySignature(secret, body []byte) string {
	m := hmac.New(sha1.New, secret)
	m.Write(body)
	return "sha1=" + hex.EncodeToString(m.Sum(nil))
}

// NewWebhookRequest builds a webhook delivery as GitHub sends it: POST with
// the JSON body, X-GitHub-Event, X-GitHub-Delivery, X-GitHub-Hook-ID and
// both signatures. A nil secret sends no signature.
func NewWebhookRequest(url, event, delivery string, secret, body []byte) (*http.Request, error) {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "GitHub-Hookshot/githubtest")
	req.Header.Set("X-GitHub-Event", event)
	req.Header.Set("X-GitHub-Delivery", delivery)
	req.Header.Set("X-GitHub-Hook-ID", "424242")
	req.Header.Set("X-GitHub-Hook-Installation-Target-Type", "integration")
	if secret != nil {
		req.Header.Set("X-Hub-Signature", legacySignature(secret, body))
		req.Header.Set("X-Hub-Signature-256", Signature(secret, body))
	}
	return req, nil
}

// Payload reads a recorded webhook payload from the shared testdata
// (github-webhooks/NAME), failing t if it is missing.
func Payload(t testing.TB, name string) []byte {
	t.Helper()
	p, err := SharedTestdata("github-webhooks/" + name)
	if err != nil {
		t.Fatalf("githubtest: %v", err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("githubtest: %v", err)
	}
	return b
}
