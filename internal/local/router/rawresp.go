package router

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"strconv"
)

// maxRespHeaders bounds the header lines of a process's answer on the raw
// path.
const maxRespHeaders = 128

// respHeader is one header line of a process's answer: offsets into
// rawConn.upHead.
type respHeader struct {
	name0, name1, val0, val1 int32
	drop                     bool
}

// respHead is a process's answer's head, read by readRespHead.
type respHead struct {
	code          int
	n             int
	contentLength int64 // -1: none
	chunked       bool
	// closeConn: the process closes the connection after this answer.
	closeConn bool
	// http10: the status line says HTTP/1.0 (or 0.x, but not 0.0): the
	// connection closes after the answer unless Connection says
	// keep-alive, and Transfer-Encoding means nothing (net/http's reading
	// of RFC 9112 §6.1).
	http10, keepAlive                                           bool
	hasRevision, hasType, hasEncoding, hasDate, hasCacheControl bool
	pragmaNoCache, sawPragma                                    bool
	hasTrailer                                                  bool
	connTokens                                                  [maxConnTokens][2]int32
	nconn                                                       int
}

// readLine reads one CRLF-terminated line into rc.upHead and returns its
// offsets (without the CRLF).
func (rc *rawConn) readLine(br *bufio.Reader) (int, int, error) {
	return rc.readLineLF(br, false)
}

// readLineLF is readLine; with bareLF, a line may end in LF alone, as
// net/http reads a head's lines.
func (rc *rawConn) readLineLF(br *bufio.Reader, bareLF bool) (int, int, error) {
	start := len(rc.upHead)
	for {
		b, err := br.ReadSlice('\n')
		rc.upHead = append(rc.upHead, b...)
		if err == nil {
			break
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return 0, 0, err
		}
	}
	end := len(rc.upHead)
	if end-start >= 2 && rc.upHead[end-2] == '\r' {
		return start, end - 2, nil
	}
	if !bareLF {
		return 0, 0, errDoubt{"a line that does not end in CRLF"}
	}
	return start, end - 1, nil
}

// readRespHead reads a response head from br as net/http reads one: an
// HTTP/1.x status line (HTTP/1.0's meaning kept), lines that end in LF
// alone, folded header lines, a Content-Length repeated with the same
// value. What net/http would refuse, or read in a way of its own (other
// transfer codings than chunked), is an errDoubt.
func (rc *rawConn) readRespHead(br *bufio.Reader) (respHead, error) {
	res := respHead{contentLength: -1}
	rc.upHead = rc.upHead[:0]
	s, e, err := rc.readLineLF(br, true)
	if err != nil {
		return res, err
	}
	line := rc.upHead[s:e]
	if len(line) < 12 || string(line[:5]) != "HTTP/" || line[6] != '.' || line[8] != ' ' ||
		line[5] < '0' || line[5] > '9' || line[7] < '0' || line[7] > '9' || (len(line) > 12 && line[12] != ' ') {
		return res, errDoubt{"status line " + strconv.Quote(string(line))}
	}
	// Below 1.1, net/http closes after the answer (HTTP/0.x even when
	// asked to keep alive) and ignores Transfer-Encoding, except that it
	// frames HTTP/0.0 (a version it takes for "none") as HTTP/1.1.
	http0 := line[5] == '0'
	res.http10 = (http0 && line[7] != '0') || (line[5] == '1' && line[7] == '0')
	code := 0
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return res, errDoubt{"status line " + strconv.Quote(string(line))}
		}
		code = code*10 + int(c-'0')
	}
	if code < 100 {
		return res, errDoubt{"status code " + strconv.Itoa(code)}
	}
	res.code = code
	// The lines first (a folded line belongs to the one before it), then
	// what they say.
	for {
		s, e, err := rc.readLineLF(br, true)
		if err != nil {
			return res, err
		}
		if s == e {
			break
		}
		line := rc.upHead[s:e]
		if line[0] == ' ' || line[0] == '\t' {
			// obs-fold: net/http joins the lines with one space.
			if res.n == 0 {
				return res, errDoubt{"folded first header line " + strconv.Quote(string(line))}
			}
			if err := rc.unfold(&rc.upLines[res.n-1], s, e); err != nil {
				return res, err
			}
			continue
		}
		colon, spaced, ok := fieldName(line)
		if !ok {
			return res, errDoubt{"header line " + strconv.Quote(string(line))}
		}
		v0, v1 := s+colon+1, e
		for v0 < v1 && (rc.upHead[v0] == ' ' || rc.upHead[v0] == '\t') {
			v0++
		}
		for v1 > v0 && (rc.upHead[v1-1] == ' ' || rc.upHead[v1-1] == '\t') {
			v1--
		}
		value := rc.upHead[v0:v1]
		if !answerValue(value) {
			return res, errDoubt{"header value " + strconv.Quote(string(value))}
		}
		if res.n == maxRespHeaders {
			return res, errDoubt{"more than " + strconv.Itoa(maxRespHeaders) + " header lines"}
		}
		rc.upLines[res.n] = respHeader{name0: int32(s), name1: int32(s + colon), val0: int32(v0), val1: int32(v1), drop: spaced}
		res.n++
	}
	for i := range res.n {
		h := &rc.upLines[i]
		if h.drop { // a name with a space
			continue
		}
		name, value := rc.upHead[h.name0:h.name1], rc.upHead[h.val0:h.val1]
		switch {
		case equalFold(name, "Content-Length"):
			n, err := strconv.ParseInt(bytesString(value), 10, 64)
			if err != nil || n < 0 || value[0] == '+' {
				return res, errDoubt{"Content-Length " + strconv.Quote(string(value))}
			}
			if res.contentLength >= 0 {
				// net/http keeps one of equal lengths.
				if n != res.contentLength {
					return res, errDoubt{"more than one Content-Length"}
				}
				h.drop = true
			}
			res.contentLength = n
		case equalFold(name, "Transfer-Encoding"):
			h.drop = true
			if res.http10 {
				break // meaningless in HTTP/1.0: net/http drops it
			}
			if res.chunked || !equalFold(value, "chunked") {
				return res, errDoubt{"Transfer-Encoding " + strconv.Quote(string(value))}
			}
			res.chunked = true
		case equalFold(name, "Connection"):
			h.drop = true
			if !res.connectionTokens(value, h.val0) {
				return res, errDoubt{"Connection " + strconv.Quote(string(value))}
			}
		case equalFold(name, RevisionHeader):
			res.hasRevision = true
			h.drop = true
		case equalFold(name, "Content-Type"):
			res.hasType = true
		case equalFold(name, "Content-Encoding"):
			res.hasEncoding = res.hasEncoding || len(value) > 0
		case equalFold(name, "Date"):
			res.hasDate = true
		case equalFold(name, "Cache-Control"):
			res.hasCacheControl = true
		case equalFold(name, "Pragma"):
			// fixPragmaCacheControl reads the first value only.
			if !res.sawPragma {
				res.sawPragma = true
				res.pragmaNoCache = string(value) == "no-cache"
			}
		case equalFold(name, "Trailer"):
			res.hasTrailer = true
			h.drop = true // put back below for chunked bodies
		case equalFold(name, "Proxy-Connection"), equalFold(name, "Keep-Alive"), equalFold(name, "Proxy-Authenticate"),
			equalFold(name, "Proxy-Authorization"), equalFold(name, "Te"), equalFold(name, "Upgrade"):
			h.drop = true
		}
	}
	if res.chunked && res.contentLength >= 0 {
		return res, errDoubt{"both Transfer-Encoding and Content-Length"}
	}
	if http0 || (res.http10 && !res.keepAlive) {
		res.closeConn = true
	}
	if res.nconn > 0 {
		for i := range res.n {
			h := &rc.upLines[i]
			name := rc.upHead[h.name0:h.name1]
			for _, tok := range res.connTokens[:res.nconn] {
				if bytes.EqualFold(name, rc.upHead[tok[0]:tok[1]]) {
					h.drop = true
				}
			}
		}
	}
	return res, nil
}

// answerValue: no control bytes but tab, as net/http takes a value in a
// process's answer (obs-text included, unlike a request's validValue).
func answerValue(b []byte) bool {
	for _, c := range b {
		if (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// unfold joins the folded line upHead[s:e] to h's value as net/http
// does (the value, one space, the line without its surrounding
// whitespace, even when that is nothing), writing the joined value at
// the end of upHead.
func (rc *rawConn) unfold(h *respHeader, s, e int) error {
	cont := trimOWS(rc.upHead[s:e])
	if !answerValue(cont) {
		return errDoubt{"header value " + strconv.Quote(string(cont))}
	}
	v0 := len(rc.upHead)
	rc.upHead = append(rc.upHead, rc.upHead[h.val0:h.val1]...)
	rc.upHead = append(rc.upHead, ' ')
	rc.upHead = append(rc.upHead, trimOWS(rc.upHead[s:e])...)
	for v0 < len(rc.upHead) && rc.upHead[v0] == ' ' { // an empty value so far
		v0++
	}
	h.val0, h.val1 = int32(v0), int32(len(rc.upHead))
	return nil
}

func (res *respHead) connectionTokens(v []byte, off int32) bool {
	pos := int32(0)
	for len(v) > 0 {
		var tok []byte
		i := bytes.IndexByte(v, ',')
		if i >= 0 {
			tok = v[:i]
		} else {
			tok, i = v, len(v)-1
		}
		t0 := pos
		for len(tok) > 0 && (tok[0] == ' ' || tok[0] == '\t') {
			tok, t0 = tok[1:], t0+1
		}
		tok = trimOWS(tok)
		if len(tok) > 0 {
			if equalFold(tok, "close") {
				res.closeConn = true
			}
			if equalFold(tok, "keep-alive") {
				res.keepAlive = true
			}
			if res.nconn == maxConnTokens {
				return false
			}
			res.connTokens[res.nconn] = [2]int32{off + t0, off + t0 + int32(len(tok))}
			res.nconn++
		}
		pos += int32(i + 1)
		v = v[i+1:]
	}
	return true
}

// Body framing on the raw path.
const (
	bodyNone    = iota // HEAD, 1xx, 204, 304
	bodyLength         // Content-Length
	bodyChunked        // chunked, forwarded chunk for chunk
	bodyClose          // until the process closes; re-chunked for the client
)

// forward writes the process's answer res to the client, as the lean
// path's answer reaches it through net/http, and copies the body. keep:
// the client connection stays open; upOK: the process's connection can
// be used again.
func (rc *rawConn) forward(c *call, ch *choice, uc *upConn, res *respHead) (keep, upOK bool) {
	br := uc.br
	code := res.code
	c.code = code
	isHead := string(rc.req.method) == http.MethodHead
	allowed := bodyAllowedForStatus(code)
	framing := bodyClose
	switch {
	case isHead || !allowed:
		framing = bodyNone
	case res.chunked:
		framing = bodyChunked
	case res.contentLength >= 0:
		framing = bodyLength
	}

	// A body of known length without a type gets one sniffed from its
	// first bytes, as net/http does; a streamed one's head goes out
	// before any of it (see proxyLean), so it gets none.
	var first []byte
	if framing == bodyLength && res.contentLength > 0 && !res.hasType && !res.hasEncoding {
		first, _ = br.Peek(int(min(res.contentLength, 512)))
	}

	closing := rc.req.closeConn || rc.s.closing.Load()
	out := append(rc.out, statusLine(code)...)
	out = appendHeader(out, RevisionHeader, ch.revision)
	if ch.setCookie {
		out = appendHeader(out, "Set-Cookie", ch.entry.cookie)
	}
	for i := range res.n {
		h := &rc.upLines[i]
		name := rc.upHead[h.name0:h.name1]
		if h.drop && (framing != bodyChunked || !equalFold(name, "Trailer")) {
			continue
		}
		if !allowed {
			if equalFold(name, "Content-Length") || (code == http.StatusNotModified && equalFold(name, "Content-Type")) {
				continue
			}
		}
		out = appendCanonical(out, name)
		out = append(out, ": "...)
		out = append(out, rc.upHead[h.val0:h.val1]...)
		out = append(out, "\r\n"...)
	}
	if res.pragmaNoCache && !res.hasCacheControl {
		out = append(out, "Cache-Control: no-cache\r\n"...)
	}
	if len(first) > 0 {
		out = append(out, "Content-Type: "...)
		out = append(out, http.DetectContentType(first)...)
		out = append(out, "\r\n"...)
	}
	if !res.hasDate {
		out = append(out, "Date: "...)
		out = append(out, rc.httpDate()...)
		out = append(out, "\r\n"...)
	}
	if framing == bodyChunked || framing == bodyClose {
		out = append(out, "Transfer-Encoding: chunked\r\n"...)
	}
	if closing {
		out = append(out, "Connection: close\r\n"...)
	}
	out = append(out, "\r\n"...)
	rc.out = out
	// From here on a failure can only cut the answer short, as the lean
	// path's ErrAbortHandler does: what net/http had not yet written is
	// dropped with the connection. It writes a streamed answer's head at
	// once (see proxyLean), and buffers the rest.
	if framing == bodyChunked || framing == bodyClose {
		if rc.flush() != nil {
			return false, false
		}
	}

	upOK = !res.closeConn
	var err error
	switch framing {
	case bodyLength:
		err = rc.copyN(br, res.contentLength, false)
	case bodyChunked:
		err = rc.copyChunked(br)
	case bodyClose:
		upOK = false
		err = rc.copyClose(br)
	}
	if err != nil {
		rc.s.Router.opts.logger.Debug("router: copying a response failed",
			"namespace", c.namespace, "route", c.route, "revision", c.revision, "addr", c.backend.Addr, "error", err)
		if framing == bodyLength {
			rc.out = rc.out[:0]
		} else {
			// Streamed: the lean path writes each piece as it reads it.
			_ = rc.flush()
		}
		return false, false
	}
	return !closing, upOK
}

// abort gives up on an answer whose head is not out yet because its body
// framing is broken: the lean path would have sent the head and then cut
// the body; here the client gets a closed connection either way.
// emit queues p for the client, writing what is queued first when p
// does not fit.
func (rc *rawConn) emit(p []byte) error {
	if len(rc.out)+len(p) <= cap(rc.out) {
		rc.out = append(rc.out, p...)
		return nil
	}
	if err := rc.flush(); err != nil {
		return errClientGone
	}
	if len(p) >= cap(rc.out) {
		if _, err := rc.c.Write(p); err != nil {
			return errClientGone
		}
		return nil
	}
	rc.out = append(rc.out, p...)
	return nil
}

// fill makes sure br has data. With stream, it first writes the
// client's pending output, so that a streamed answer reaches the client
// as it is written; a body of known length is buffered as net/http
// buffers it on the lean path.
func (rc *rawConn) fill(br *bufio.Reader, stream bool) error {
	if br.Buffered() > 0 {
		return nil
	}
	if stream {
		if err := rc.flush(); err != nil {
			return errClientGone
		}
	}
	_, err := br.Peek(1)
	return err
}

// copyN forwards n bytes of body.
func (rc *rawConn) copyN(br *bufio.Reader, n int64, stream bool) error {
	for n > 0 {
		if err := rc.fill(br, stream); err != nil {
			if errors.Is(err, io.EOF) {
				return io.ErrUnexpectedEOF
			}
			return err
		}
		k := int(min(n, int64(br.Buffered())))
		p, _ := br.Peek(k)
		if err := rc.emit(p); err != nil {
			return err
		}
		_, _ = br.Discard(k)
		n -= int64(k)
	}
	return nil
}

// maxChunkLine is net/http's bound on a chunk-size line, and
// maxTrailers the bound on a trailer section that its reader can see the
// end of (its buffer).
const (
	maxChunkLine = 4096
	maxTrailers  = 4096
)

// copyChunked forwards a chunked body verbatim, chunk for chunk, to the
// blank line after its trailers, reading each chunk's size to find the
// end. It takes no more than net/http's chunked reader takes (the fuzz
// test checks it against that reader).
func (rc *rawConn) copyChunked(br *bufio.Reader) error {
	// excess is net/http's guard against bodies that are mostly
	// framing (chunk extensions): the same sum, the same limit.
	var excess int64
	for {
		if err := rc.fill(br, true); err != nil {
			return err
		}
		rc.upHead = rc.upHead[:0]
		s, e, err := rc.readLine(br)
		if err != nil {
			return err
		}
		size, ok := parseChunkSize(rc.upHead[s:e])
		if !ok || e-s+2 >= maxChunkLine {
			return errDoubt{"chunk size line " + strconv.Quote(string(rc.upHead[s:e]))}
		}
		excess += int64(e-s+2) + 2 - 16 - 2*size
		excess = max(excess, 0)
		if excess > 16*1024 {
			return errDoubt{"a chunked body that is mostly framing"}
		}
		if err := rc.emit(rc.upHead[s : e+2]); err != nil {
			return err
		}
		if size == 0 {
			break
		}
		if err := rc.copyN(br, size, true); err != nil {
			return err
		}
		if err := rc.fill(br, true); err != nil {
			return err
		}
		if crlf, err := br.Peek(2); err != nil || string(crlf) != "\r\n" {
			return errDoubt{"chunk data not followed by CRLF"}
		}
		if err := rc.emit(crlf); err != nil {
			return err
		}
		_, _ = br.Discard(2)
	}
	// The trailer section, to its blank line, read as net/http reads
	// one: a folded line is joined to the one before it, a name with a
	// space in it is read and left out; a line may end in LF alone, but
	// the section must end in CRLF CRLF (net/http looks for one before
	// it reads a line; a section whose blank line is a bare LF, with a
	// CRLF CRLF only after it, net/http takes and the raw path does
	// not). The section is forwarded whole at its blank line, each line
	// as it came, in CRLF, unless it was folded.
	rc.upHead = rc.upHead[:0]
	var (
		out     []byte
		total   int
		lines   int  // lines read, the blank one aside
		dropped bool // the last field read was left out
		folded  bool // the last field read was folded
		lastCR  bool // the last line read ended in CRLF
	)
	for {
		if err := rc.fill(br, true); err != nil {
			return err
		}
		s, e, err := rc.readLineLF(br, true)
		if err != nil {
			return err
		}
		if total += len(rc.upHead) - s; total > maxTrailers {
			return errDoubt{"trailers past " + strconv.Itoa(maxTrailers) + " bytes"}
		}
		line, cr := rc.upHead[s:e], e < len(rc.upHead) && rc.upHead[e] == '\r'
		if len(line) == 0 && (!cr || lines > 0 && !lastCR) {
			return errDoubt{"a trailer section that does not end in CRLF CRLF"}
		}
		lastCR = cr
		switch {
		case len(line) == 0 && out == nil:
			return rc.emit(crlf)
		case len(line) == 0:
			return rc.emit(append(out, crlf...))
		case line[0] == ' ' || line[0] == '\t':
			cont := trimOWS(line)
			if lines == 0 || !answerValue(cont) {
				return errDoubt{"trailer line " + strconv.Quote(string(line))}
			}
			if !dropped {
				// As textproto: the first line trimmed, then a space
				// and each trimmed continuation, empty ones too.
				if out = out[:len(out)-2]; !folded {
					out = trimOWS(out)
				}
				out = append(append(append(out, ' '), cont...), crlf...)
				folded = true
			}
		default:
			colon, spaced, ok := fieldName(line)
			if !ok || !answerValue(line[colon+1:]) {
				return errDoubt{"trailer line " + strconv.Quote(string(line))}
			}
			folded = false
			if dropped = spaced; !dropped {
				out = append(append(out, line...), crlf...)
			}
		}
		lines++
	}
}

// copyClose forwards a body that ends when the process closes the
// connection, as chunks (what net/http makes of it on the lean path).
func (rc *rawConn) copyClose(br *bufio.Reader) error {
	var size [20]byte
	for {
		if err := rc.fill(br, true); err != nil {
			if errors.Is(err, io.EOF) {
				return rc.emit(lastChunk)
			}
			return err
		}
		k := br.Buffered()
		p, _ := br.Peek(k)
		line := append(strconv.AppendInt(size[:0], int64(k), 16), '\r', '\n')
		if err := rc.emit(line); err != nil {
			return err
		}
		if err := rc.emit(p); err != nil {
			return err
		}
		if err := rc.emit(crlf); err != nil {
			return err
		}
		_, _ = br.Discard(k)
	}
}

// parseChunkSize reads a chunk-size line (without its CRLF): hex digits,
// then optionally a chunk extension after ';'. It is stricter than
// net/http's reader (no spaces before the extension or after the size,
// at most 15 hex digits) and never more lenient.
func parseChunkSize(line []byte) (int64, bool) {
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		if !answerValue(line[i+1:]) {
			return 0, false
		}
		line = line[:i]
	}
	if len(line) == 0 || len(line) > 15 {
		return 0, false
	}
	var n int64
	for _, c := range line {
		switch {
		case '0' <= c && c <= '9':
			n = n<<4 | int64(c-'0')
		case 'a' <= c && c <= 'f':
			n = n<<4 | int64(c-'a'+10)
		case 'A' <= c && c <= 'F':
			n = n<<4 | int64(c-'A'+10)
		default:
			return 0, false
		}
	}
	return n, true
}

var (
	crlf      = []byte("\r\n")
	lastChunk = []byte("0\r\n\r\n")
)

// bodyAllowedForStatus is net/http's rule: no body for 1xx, 204, 304.
func bodyAllowedForStatus(code int) bool {
	return (code < 100 || code > 199) && code != http.StatusNoContent && code != http.StatusNotModified
}
