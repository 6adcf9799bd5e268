package router

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The raw loop's parsers are checked against net/http's own, as the
// oracle: whatever the raw parser takes, net/http must read the same way;
// what it does not take goes to net/http anyway, so refusing is always
// safe. Seeds are in testdata/fuzz; run longer with
//   go test -run '^$' -fuzz FuzzRequestHead ./internal/local/router/
//   go test -run '^$' -fuzz FuzzChunked ./internal/local/router/

// serverSaw is what a net/http server's handler sees of a request.
type serverSaw struct {
	Method, RequestURI, URI, Host string
	Header                        http.Header
	Close                         bool
	ContentLength                 int64
	Lean                          bool // leanEligible
	Forwarded                     seenRequest
}

// oneConnListener yields one connection, then blocks until closed.
type oneConnListener struct {
	once sync.Once
	c    net.Conn
	done chan struct{}
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	var c net.Conn
	l.once.Do(func() { c = l.c })
	if c != nil {
		return c, nil
	}
	<-l.done
	return nil, net.ErrClosed
}
func (l *oneConnListener) Close() error   { return nil }
func (l *oneConnListener) Addr() net.Addr { return handoffAddr{} }

// netHTTPReads serves head with a real net/http server and returns what
// its handler saw, or false if net/http answered without calling it
// (400, 431, 505...).
func netHTTPReads(head []byte) (serverSaw, bool) {
	c1, c2 := net.Pipe()
	got := make(chan serverSaw, 1)
	l := &oneConnListener{c: c1, done: make(chan struct{})}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.RemoteAddr = "192.0.2.1:1234"
		var up bytes.Buffer
		bw := bufio.NewWriter(&up)
		writeRequest(bw, r)
		_ = bw.Flush()
		got <- serverSaw{
			Method: r.Method, RequestURI: r.RequestURI, URI: r.URL.RequestURI(), Host: r.Host,
			Header: r.Header.Clone(), Close: r.Close, ContentLength: r.ContentLength, Lean: leanEligible(r),
			Forwarded: forwarded(up.Bytes()),
		}
	})}
	go func() { _ = srv.Serve(l) }()
	go func() { _, _ = c2.Write(head) }()
	if res, err := http.ReadResponse(bufio.NewReader(c2), nil); err == nil {
		_ = res.Body.Close()
	}
	_ = c2.Close()
	close(l.done)
	_ = srv.Close()
	select {
	case s := <-got:
		return s, true
	default:
		return serverSaw{}, false
	}
}

// forwarded parses a request written for a process, as the process's
// net/http would.
func forwarded(b []byte) seenRequest {
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(b)))
	if err != nil {
		return seenRequest{Method: "unreadable: " + err.Error()}
	}
	return seenRequest{Method: req.Method, URI: req.RequestURI, Host: req.Host, Header: req.Header}
}

func FuzzRequestHead(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: svc.default.localhost\r\n\r\n",
		"GET /a/b?c=d&e=%2F HTTP/1.1\r\nHost: svc.default.localhost:8080\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n",
		"HEAD /x HTTP/1.1\r\nhost: A.B.\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\nTe: trailers\r\n\r\n",
		"OPTIONS /o HTTP/1.1\r\nHost: h\r\nElafros-Target: next\r\nElafros-Target: other\r\nCookie: a=b\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1.2.3.4\r\nForwarded: for=x\r\nKeep-Alive: 5\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\nX-Empty:\r\nX-Spaces:  a b  \r\n\r\n",
		"GET http://h/ HTTP/1.1\r\nHost: h\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
		"GET / HTTP/1.0\r\nHost: h\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		end, st := headEnd(data)
		if st != headComplete {
			return
		}
		head := data[:end]
		var r rawRequest
		if !parseRequestHead(head, &r) {
			return // net/http's to answer
		}
		want, ok := netHTTPReads(head)
		if !ok {
			t.Fatalf("the raw parser takes %q, net/http refuses it", head)
		}
		h := http.Header{}
		for _, hd := range r.headers[:r.n] {
			if !equalFold(hd.name, "Host") {
				k := textproto.CanonicalMIMEHeaderKey(string(hd.name))
				h[k] = append(h[k], string(hd.value))
			}
		}
		rc := &rawConn{req: r, remoteIP: "192.0.2.1"}
		got := serverSaw{
			Method: string(r.method), RequestURI: string(r.target), URI: string(r.target), Host: string(r.host),
			Header: h, Close: r.closeConn, ContentLength: 0, Lean: true,
			Forwarded: forwarded(rc.appendUpstream(nil)),
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Fatalf("%q (-net/http +raw):\n%s", head, d)
		}
		var tag string
		if r.hasTag {
			tag = string(r.tag)
		}
		if want := want.Header.Get(TargetHeader); tag != want {
			t.Errorf("%q: target %q, net/http's first value %q", head, tag, want)
		}
		if want, got := canonicalHost(want.Host), string(canonicalHostBytes(nil, r.host)); want != got {
			t.Errorf("%q: canonical host %q, canonicalHost gives %q", head, got, want)
		}
	})
}

// captureConn is a client connection that keeps what is written to it.
type captureConn struct {
	net.Conn
	buf bytes.Buffer
}

func (c *captureConn) Write(p []byte) (int, error) { return c.buf.Write(p) }

func FuzzChunked(f *testing.F) {
	for _, s := range []string{
		"5\r\nhello\r\n0\r\n\r\n",
		"3;ext=1\r\nabc\r\n0\r\nX-Sum: 1\r\nX-Other: 2\r\n\r\n",
		"A\r\n0123456789\r\n1\r\nx\r\n0\r\n\r\nnext request",
		"0\r\n\r\n",
		"5\r\nhel\r\n",
		"zz\r\n",
		"5 \r\nhello\r\n0\r\n\r\n",
		"5\nhello\r\n0\r\n\r\n",
		"5\r\nhello\r\n0\r\nX Odd: 1\r\nX-Sum: 5\r\n\r\n",
		"0\r\nX-Sum : 1\r\n\r\n",
		"0\r\nX-Sum: 1 \r\n\t2\r\n \r\nX Odd: 1\r\n 3\r\n\r\n",
		"0\r\nX-Sum: 1\nX-B: 2\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		// What the raw path forwards must be the input's chunks as they
		// came, then trailers that read as net/http reads the input's
		// (less the names with a space, which net/http reads and never
		// writes) in lines that end in CRLF; it must read as far as a
		// net/http reader reads (after the trailers' blank line), and
		// decode to the same data.
		cc := &captureConn{}
		rc := &rawConn{c: cc, out: make([]byte, 0, 64)}
		rawSrc := bytes.NewReader(body)
		rawBr := bufio.NewReaderSize(rawSrc, 16)
		err := rc.copyChunked(rawBr)
		_ = rc.flush()
		out := cc.buf.Bytes()
		if err == nil {
			src := bytes.NewReader(body)
			br := bufio.NewReader(src)
			data, oerr := io.ReadAll(httputil.NewChunkedReader(br))
			trailers := len(body) - src.Len() - br.Buffered()
			var want textproto.MIMEHeader
			if oerr == nil {
				want, oerr = textproto.NewReader(br).ReadMIMEHeader()
			}
			if oerr != nil {
				t.Fatalf("the raw path took %q, net/http's reader refuses it: %v", out, oerr)
			}
			consumed := len(body) - src.Len() - br.Buffered()
			if took := len(body) - rawSrc.Len() - rawBr.Buffered(); took != consumed {
				t.Fatalf("the raw path read %d bytes of %q; net/http's reader ends at %d", took, body, consumed)
			}
			if len(out) < trailers || !bytes.Equal(out[:trailers], body[:trailers]) {
				t.Fatalf("forwarded %q, not the chunks of %q as they came", out, body)
			}
			// net/http writes a field's value trimmed, and no field
			// whose name has a space.
			for k, vs := range want {
				if strings.Contains(k, " ") {
					delete(want, k)
				}
				for i, v := range vs {
					vs[i] = textproto.TrimString(v)
				}
			}
			// net/http's body reader takes no trailer section without
			// a CRLF CRLF (or a lone CRLF) in its 4 kB buffer.
			if rest := body[trailers:consumed]; !bytes.Equal(rest, []byte("\r\n")) && !bytes.Contains(rest, []byte("\r\n\r\n")) {
				t.Fatalf("the raw path took trailers %q, net/http's body reader refuses them", rest)
			}
			section := out[trailers:]
			if bytes.Contains(bytes.ReplaceAll(section, []byte("\r\n"), nil), []byte("\n")) || !bytes.HasSuffix(section, []byte("\r\n")) {
				t.Fatalf("forwarded trailers %q, lines not all ending in CRLF", section)
			}
			got, gerr := textproto.NewReader(bufio.NewReader(bytes.NewReader(section))).ReadMIMEHeader()
			if gerr != nil || !cmp.Equal(got, want) && len(got)+len(want) > 0 {
				t.Fatalf("forwarded trailers %q read as %v (%v), net/http read %q as %v", section, got, gerr, body[trailers:consumed], want)
			}
			dec, derr := io.ReadAll(httputil.NewChunkedReader(bufio.NewReader(bytes.NewReader(out))))
			if derr != nil || !bytes.Equal(dec, data) {
				t.Fatalf("%q decodes to %q (%v), net/http read %q", out, dec, derr, data)
			}
		}

		// Data chunked by net/http's writer is always taken, byte for
		// byte.
		var enc bytes.Buffer
		cw := httputil.NewChunkedWriter(&enc)
		for rest := body; len(rest) > 0; {
			n := min(len(rest), 1+int(rest[0])%7)
			_, _ = cw.Write(rest[:n])
			rest = rest[n:]
		}
		_ = cw.Close()
		enc.WriteString("X-Trailer: t\r\n\r\n")
		cc2 := &captureConn{}
		rc2 := &rawConn{c: cc2, out: make([]byte, 0, 64)}
		if err := rc2.copyChunked(bufio.NewReaderSize(bytes.NewReader(enc.Bytes()), 16)); err != nil {
			t.Fatalf("%q: %v", enc.Bytes(), err)
		}
		_ = rc2.flush()
		if !bytes.Equal(cc2.buf.Bytes(), enc.Bytes()) {
			t.Fatalf("forwarded %q, want %q", cc2.buf.Bytes(), enc.Bytes())
		}
	})
}

// TestHeadEnd pins where a head ends, and what is left to net/http.
func TestHeadEnd(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		end  int
		want headStatus
	}{
		{"GET / HTTP/1.1\r\nHost: h\r\n\r\nnext", 27, headComplete},
		{"GET / HTTP/1.1\r\nHost: h\r\n", 0, headIncomplete},
		{"GET / HTTP/1.1\r\nHost: h\r\n\r", 0, headIncomplete},
		{"GET / HTTP/1.1\nHost: h\n\n", 0, headNotMine},
		{"\r\nGET / HTTP/1.1\r\n\r\n", 0, headNotMine},
	} {
		end, st := headEnd([]byte(tc.in))
		if end != tc.end || st != tc.want {
			t.Errorf("headEnd(%q) = %d, %d; want %d, %d", tc.in, end, st, tc.end, tc.want)
		}
	}
}

// FuzzResponseHead: a process's answer head the raw path reads, net/http
// reads too, with the same status, framing, connection reuse and header
// values; anything else the raw path doubts (502), never misreads.
func FuzzResponseHead(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n",
		"HTTP/1.0 200 OK\r\nServer: SimpleHTTP/0.6 Python/3.11.2\r\nContent-type: text/html\r\nContent-Length: 5\r\n\r\n",
		"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n",
		"HTTP/1.1 204\nX-A: b\n\n",
		"HTTP/1.1 200 OK\r\nX-F: one\r\n two\r\n\tthree \r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\nTrailer: X-T\r\n\r\n",
		"HTTP/0.9 301 Moved\r\nLocation: /x\r\n\r\n",
		"HTTP/2.0 100 Continue\r\n\r\n",
		"HTTP/1.1 200 OK\r\n X-A: b\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, head []byte) {
		rc := &rawConn{}
		res, err := rc.readRespHead(bufio.NewReaderSize(bytes.NewReader(head), 16))
		if err != nil {
			return
		}
		want, werr := http.ReadResponse(bufio.NewReader(bytes.NewReader(head)), &http.Request{Method: http.MethodGet})
		if werr != nil {
			t.Fatalf("the raw path reads %q; net/http refuses it: %v", head, werr)
		}
		defer want.Body.Close()
		if res.code != want.StatusCode {
			t.Fatalf("%q: status %d, net/http %d", head, res.code, want.StatusCode)
		}
		chunked := len(want.TransferEncoding) > 0
		if bodyAllowedForStatus(res.code) && (res.chunked != chunked || (!chunked && res.contentLength != want.ContentLength)) {
			t.Fatalf("%q: chunked %v, length %d; net/http %v, %d", head, res.chunked, res.contentLength, chunked, want.ContentLength)
		}
		// A body that runs until the process closes closes the
		// connection too (forward's bodyClose).
		closes := res.closeConn || (bodyAllowedForStatus(res.code) && !res.chunked && res.contentLength < 0)
		if closes != want.Close {
			t.Fatalf("%q: closes %v, net/http %v", head, closes, want.Close)
		}
		got := http.Header{}
		for i := range res.n {
			h := &rc.upLines[i]
			name := string(rc.upHead[h.name0:h.name1])
			if !h.drop && !strings.EqualFold(name, "Content-Length") {
				got.Add(name, string(rc.upHead[h.val0:h.val1]))
			}
		}
		for name, vs := range got {
			if wv := want.Header.Values(name); !slices.Equal(vs, wv) {
				t.Fatalf("%q: %s %q, net/http %q", head, name, vs, wv)
			}
		}
	})
}
