// Package function is the example function (the seed's scenario 5): an
// exported func(http.ResponseWriter, *http.Request) that the go-function
// builder wraps in a generated main serving $PORT. Its revision runs
// SingleThreaded, so it sees one request at a time.
package function

import (
	"fmt"
	"net/http"
	"os"
)

// Hello greets $HELLO's value, or the name in the query.
func Hello(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("name")
	if name == "" {
		name = os.Getenv("HELLO")
	}
	if name == "" {
		name = "world"
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, "Hello, %s! (FOO=%s)\n", name, os.Getenv("FOO"))
}
