package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestHello(t *testing.T) {
	env := map[string]string{"TARGET": "elafros", "ELAFROS_REVISION": "hello-00002"}
	srv := httptest.NewServer(newHandler(func(k string) string { return env[k] }))
	defer srv.Close()

	res, err := http.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || string(body) != "Hello elafros!\n" || res.Header.Get("Elafros-Revision") != "hello-00002" {
		t.Errorf("GET / = %d %q revision %q", res.StatusCode, body, res.Header.Get("Elafros-Revision"))
	}
	res, err = http.Get(srv.URL + "/nope")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNotFound {
		t.Errorf("GET /nope = %d, want 404", res.StatusCode)
	}
}
