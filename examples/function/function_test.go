package function

import (
	"net/http/httptest"
	"testing"
)

func TestHello(t *testing.T) {
	t.Setenv("HELLO", "world")
	t.Setenv("FOO", "bar")
	for _, tc := range []struct{ url, want string }{
		{"/", "Hello, world! (FOO=bar)\n"},
		{"/?name=elafros", "Hello, elafros! (FOO=bar)\n"},
	} {
		rec := httptest.NewRecorder()
		Hello(rec, httptest.NewRequest("GET", tc.url, nil))
		if rec.Code != 200 || rec.Body.String() != tc.want {
			t.Errorf("GET %s = %d %q, want %q", tc.url, rec.Code, rec.Body.String(), tc.want)
		}
	}
}
