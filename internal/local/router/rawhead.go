package router

import "bytes"

// The raw server's request-head parser. It is deliberately narrow: it
// takes the requests wrk, browsers and health checks send all day (a GET,
// HEAD, OPTIONS or TRACE on HTTP/1.1, origin-form target, one Host, plain
// header lines, no body), in the exact form net/http would read them the
// same way, and says "not mine" to everything else. "Not mine" is never an
// error: the connection goes to net/http with the bytes already read, and
// net/http answers as it always has (400 and close for malformed heads,
// 431 past its header limit, bodies, upgrades, HTTP/1.0...). So the parser
// never has to be as lenient as net/http, only never more lenient.

// maxRawHeaders bounds the header lines of a raw request; past it the
// request goes to net/http.
const maxRawHeaders = 64

// maxConnTokens bounds the Connection header's tokens a raw request may
// name; past it the request goes to net/http.
const maxConnTokens = 8

// headStatus says what headEnd found.
type headStatus int

const (
	headIncomplete headStatus = iota // no blank line yet: read more
	headComplete                     // buf[:end] is the head
	headNotMine                      // a line net/http reads differently (bare LF, leading blank line)
)

// headEnd finds the end of the request head in buf: just past the first
// CRLF CRLF. Every line must end in CRLF: a bare LF (which net/http's
// textproto accepts) is left to net/http rather than parsed a second way.
func headEnd(buf []byte) (int, headStatus) {
	start := 0
	for {
		i := bytes.IndexByte(buf[start:], '\n')
		if i < 0 {
			return 0, headIncomplete
		}
		i += start
		if i == 0 || buf[i-1] != '\r' {
			return 0, headNotMine
		}
		if i == start+1 { // an empty line
			if start == 0 {
				return 0, headNotMine
			}
			return i + 1, headComplete
		}
		start = i + 1
	}
}

// rawHeader is one header line of a raw request, pointing into the
// connection's read buffer.
type rawHeader struct {
	name, value []byte
	// skip: not forwarded (hop-by-hop, framing, forwarding headers the
	// router writes itself, the target header).
	skip bool
}

// rawRequest is a request head parsed in place: its slices point into the
// connection's read buffer and are valid until the next request is read.
type rawRequest struct {
	method, target, host []byte
	headers              [maxRawHeaders]rawHeader
	n                    int
	// closeConn: the client sent Connection: close.
	closeConn bool
	// tag is the first Elafros-Target value; hasTag whether there was one.
	tag    []byte
	hasTag bool
	// teTrailers: a Te header lists "trailers" (forwarded as ReverseProxy
	// does, gRPC needs it), unless Connection names Te.
	teTrailers bool
	// cookies: at least one Cookie header (read only for sticky routes).
	cookies bool
	conn    [maxConnTokens][]byte
	nconn   int
}

// parseRequestHead parses head (ending in CRLF CRLF, as headEnd found it)
// into r. It reports false for anything it does not take, leaving r in an
// unspecified state.
func parseRequestHead(head []byte, r *rawRequest) bool {
	*r = rawRequest{headers: r.headers} // the array's old slices are overwritten below
	line, rest := cutLine(head)
	sp := bytes.IndexByte(line, ' ')
	if sp < 0 {
		return false
	}
	r.method = line[:sp]
	switch string(r.method) {
	case "GET", "HEAD", "OPTIONS", "TRACE":
	default:
		// Other methods are not safe to send twice over a stale
		// connection, and may carry bodies: net/http's path.
		return false
	}
	line = line[sp+1:]
	sp = bytes.IndexByte(line, ' ')
	if sp < 0 || string(line[sp+1:]) != "HTTP/1.1" {
		return false
	}
	r.target = line[:sp]
	if !validTarget(r.target) {
		return false
	}
	hosts := 0
	for {
		line, rest = cutLine(rest)
		if len(line) == 0 {
			break
		}
		if r.n == maxRawHeaders {
			return false
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return false
		}
		name, value := line[:colon], trimOWS(line[colon+1:])
		if !validToken(name) || !validValue(value) {
			return false
		}
		h := &r.headers[r.n]
		r.n++
		h.name, h.value, h.skip = name, value, false
		switch {
		case equalFold(name, "Host"):
			hosts++
			r.host = value
			h.skip = true
		case equalFold(name, "Content-Length"), equalFold(name, "Transfer-Encoding"),
			equalFold(name, "Expect"), equalFold(name, "Upgrade"), equalFold(name, "Pragma"),
			equalFold(name, "Http2-Settings"):
			// A body, an upgrade, an expectation, or a header net/http
			// rewrites on reading (Pragma: no-cache adds Cache-Control).
			return false
		case equalFold(name, "Connection"):
			h.skip = true
			if !r.connectionTokens(value) {
				return false
			}
		case equalFold(name, "Te"):
			h.skip = true
			if hasTokenBytes(value, "trailers") {
				r.teTrailers = true
			}
		case equalFold(name, TargetHeader):
			h.skip = true
			if !r.hasTag {
				r.tag, r.hasTag = value, true
			}
		case equalFold(name, "Cookie"):
			r.cookies = true
		case isHopOrNotForwarded(name):
			h.skip = true
		}
	}
	if hosts != 1 || !validHost(r.host) {
		return false
	}
	if r.nconn > 0 {
		for i := range r.n {
			h := &r.headers[i]
			if !h.skip && r.namedByConnection(h.name) {
				h.skip = true
			}
		}
		if r.teTrailers && r.namedByConnection([]byte("Te")) {
			r.teTrailers = false
		}
	}
	return true
}

// connectionTokens notes the tokens of a Connection header value.
func (r *rawRequest) connectionTokens(v []byte) bool {
	for len(v) > 0 {
		var tok []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			tok, v = v[:i], v[i+1:]
		} else {
			tok, v = v, nil
		}
		tok = trimOWS(tok)
		if len(tok) == 0 {
			continue
		}
		if !validToken(tok) {
			return false
		}
		if equalFold(tok, "close") {
			r.closeConn = true
		}
		if r.nconn == maxConnTokens {
			return false
		}
		r.conn[r.nconn] = tok
		r.nconn++
	}
	return true
}

func (r *rawRequest) namedByConnection(name []byte) bool {
	for _, tok := range r.conn[:r.nconn] {
		if bytes.EqualFold(tok, name) {
			return true
		}
	}
	return false
}

// isHopOrNotForwarded: the headers the lean path does not forward as
// they came (hopHeaders and notForwarded, in any case).
func isHopOrNotForwarded(name []byte) bool {
	switch len(name) {
	case 2:
		return equalFold(name, "Te")
	case 7:
		return equalFold(name, "Trailer") || equalFold(name, "Upgrade")
	case 9:
		return equalFold(name, "Forwarded")
	case 10:
		return equalFold(name, "Keep-Alive") || equalFold(name, "Connection")
	case 15:
		return equalFold(name, "X-Forwarded-For")
	case 16:
		return equalFold(name, "Proxy-Connection") || equalFold(name, "X-Forwarded-Host")
	case 17:
		return equalFold(name, "X-Forwarded-Proto") || equalFold(name, "Transfer-Encoding")
	case 18:
		return equalFold(name, "Proxy-Authenticate")
	case 19:
		return equalFold(name, "Proxy-Authorization")
	}
	return false
}

// cutLine splits b after its first CRLF; the line excludes it.
func cutLine(b []byte) (line, rest []byte) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return b, nil
	}
	return b[:i-1], b[i+1:]
}

// trimOWS trims spaces and tabs at both ends, as textproto does.
func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// equalFold compares b with an ASCII name, ignoring case, without
// converting either.
func equalFold(b []byte, name string) bool {
	if len(b) != len(name) {
		return false
	}
	for i := range len(b) {
		c, n := b[i], name[i]
		if c == n {
			continue
		}
		if c|0x20 != n|0x20 || c|0x20 < 'a' || c|0x20 > 'z' {
			return false
		}
	}
	return true
}

func hasTokenBytes(v []byte, token string) bool {
	for len(v) > 0 {
		var tok []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			tok, v = v[:i], v[i+1:]
		} else {
			tok, v = v, nil
		}
		if equalFold(trimOWS(tok), token) {
			return true
		}
	}
	return false
}

// charTable is a byte table of the digits, the ASCII letters and extra.
func charTable(extra string) (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range extra {
		t[c] = true
	}
	return t
}

// tokenChars are RFC 9110's tchar.
var tokenChars = charTable("!#$%&'*+-.^_`|~")

// spacedToken: token characters and spaces, as net/http takes a
// response's header name (go.dev/issue/34540).
func spacedToken(b []byte) bool {
	for _, c := range b {
		if !tokenChars[c] && c != ' ' {
			return false
		}
	}
	return len(b) > 0
}

// fieldName finds the colon of a "name: value" line from a process, as
// net/http reads one: ok if the name is a token, or token characters and
// spaces (spaced: net/http reads such a name and never writes it out, so
// the field is left out).
func fieldName(line []byte) (colon int, spaced, ok bool) {
	colon = bytes.IndexByte(line, ':')
	if colon <= 0 {
		return colon, false, false
	}
	if validToken(line[:colon]) {
		return colon, false, true
	}
	return colon, true, spacedToken(line[:colon])
}

func validToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !tokenChars[c] {
			return false
		}
	}
	return true
}

// validValue: visible ASCII, spaces and tabs. net/http also takes
// obs-text (bytes of 0x80 and up); the raw path leaves those to it.
func validValue(b []byte) bool {
	for _, c := range b {
		if (c < 0x20 && c != '\t') || c >= 0x7f {
			return false
		}
	}
	return true
}

// targetChars are the bytes of an origin-form target that
// url.ParseRequestURI and URL.RequestURI give back unchanged: unreserved,
// sub-delims, ':', '@', '/' and '?'; '%' is checked apart.
var targetChars = charTable("-._~!$&'()*+,;=:@/?")

// validTarget: an origin-form target ("/path?query") that the lean path
// would forward byte for byte. Anything else (absolute-form, "*",
// fragments, bytes that URL.RequestURI would escape, malformed
// percent-encoding) goes to net/http.
func validTarget(b []byte) bool {
	if len(b) == 0 || b[0] != '/' {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case c == '%':
			if i+2 >= len(b) || !isHex(b[i+1]) || !isHex(b[i+2]) {
				return false
			}
			i += 2
		case targetChars[c]:
		default:
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// validHost: a host name or IPv4 address with an optional port, in the
// narrow form canonicalHostBytes reads as canonicalHost does. IPv6
// literals and anything unusual go to net/http.
func validHost(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	colons := 0
	for _, c := range b {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '.', c == '_':
		case c == ':':
			colons++
		default:
			return false
		}
	}
	return colons <= 1
}

// canonicalHostBytes is canonicalHost for a host validHost took, written
// into dst: without its port and trailing dot, in lower case.
func canonicalHostBytes(dst []byte, host []byte) []byte {
	if i := bytes.IndexByte(host, ':'); i >= 0 {
		host = host[:i]
	}
	if n := len(host); n > 0 && host[n-1] == '.' {
		host = host[:n-1]
	}
	dst = dst[:0]
	for _, c := range host {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}
