package recording

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"
	"unicode/utf8"
)

// HAR 1.2 (http://www.softwareishard.com/blog/har-12-spec/), as far as
// tether writes and reads it. Fields starting with "_" are HAR's custom
// fields: tether keeps its own exchange data there so a HAR file it wrote
// replays exactly.

// HAR is a HAR document.
type HAR struct {
	Log HARLog `json:"log"`
}

// HARLog is the log object.
type HARLog struct {
	Version string     `json:"version"`
	Creator HARCreator `json:"creator"`
	Entries []HAREntry `json:"entries"`
}

// HARCreator names the program that wrote the file.
type HARCreator struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// HAREntry is one exchange.
type HAREntry struct {
	StartedDateTime string      `json:"startedDateTime"`
	Time            float64     `json:"time"`
	Request         HARRequest  `json:"request"`
	Response        HARResponse `json:"response"`
	Cache           struct{}    `json:"cache"`
	Timings         HARTimings  `json:"timings"`
	ServerIPAddress string      `json:"serverIPAddress,omitempty"`
	Comment         string      `json:"comment,omitempty"`
	// tether's own: the exchange's name, pod, caller and destination.
	Ref         string `json:"_tetherRef,omitempty"`
	Pod         string `json:"_pod,omitempty"`
	Source      string `json:"_source,omitempty"`
	Destination string `json:"_destination,omitempty"`
}

// HARRequest is a request.
type HARRequest struct {
	Method      string       `json:"method"`
	URL         string       `json:"url"`
	HTTPVersion string       `json:"httpVersion"`
	Cookies     []HARCookie  `json:"cookies"`
	Headers     []HARNameVal `json:"headers"`
	QueryString []HARNameVal `json:"queryString"`
	PostData    *HARPostData `json:"postData,omitempty"`
	HeadersSize int          `json:"headersSize"`
	BodySize    int64        `json:"bodySize"`
	// tether's own: the body's encoding ("base64" for binary) and whether
	// it was truncated at record time; which headers were redacted.
	Encoding  string   `json:"_encoding,omitempty"`
	Truncated bool     `json:"_truncated,omitempty"`
	Redacted  []string `json:"_redacted,omitempty"`
}

// HARResponse is a response.
type HARResponse struct {
	Status      int          `json:"status"`
	StatusText  string       `json:"statusText"`
	HTTPVersion string       `json:"httpVersion"`
	Cookies     []HARCookie  `json:"cookies"`
	Headers     []HARNameVal `json:"headers"`
	Content     HARContent   `json:"content"`
	RedirectURL string       `json:"redirectURL"`
	HeadersSize int          `json:"headersSize"`
	BodySize    int64        `json:"bodySize"`
	Truncated   bool         `json:"_truncated,omitempty"`
	Redacted    []string     `json:"_redacted,omitempty"`
}

// HARCookie is a cookie; tether lists none (cookies stay in the headers,
// where redaction applies).
type HARCookie struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// HARNameVal is a header or a query parameter.
type HARNameVal struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// HARPostData is a request body.
type HARPostData struct {
	MimeType string       `json:"mimeType"`
	Params   []HARNameVal `json:"params,omitempty"` // excludes text (HAR 1.2)
	Text     string       `json:"text"`
}

// HARContent is a response body.
type HARContent struct {
	Size     int64  `json:"size"`
	MimeType string `json:"mimeType"`
	Text     string `json:"text,omitempty"`
	Encoding string `json:"encoding,omitempty"`
}

// HARTimings are in milliseconds; -1 for what does not apply.
type HARTimings struct {
	Blocked float64 `json:"blocked"`
	DNS     float64 `json:"dns"`
	Connect float64 `json:"connect"`
	Send    float64 `json:"send"`
	Wait    float64 `json:"wait"`
	Receive float64 `json:"receive"`
	SSL     float64 `json:"ssl"`
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// ToHAR turns exchanges into a HAR document; ref names each exchange.
func ToHAR(exchanges []*Exchange, ref func(*Exchange) string, creatorVersion string) HAR {
	h := HAR{Log: HARLog{Version: "1.2", Creator: HARCreator{Name: "tether", Version: creatorVersion}, Entries: []HAREntry{}}}
	for _, e := range exchanges {
		host := e.Request.Host
		if host == "" {
			host = "unknown"
		}
		u := "http://" + host + e.Request.Target
		entry := HAREntry{
			StartedDateTime: e.Time.UTC().Format(time.RFC3339Nano),
			Time:            ms(e.Latency()),
			Timings:         HARTimings{Blocked: -1, DNS: -1, Connect: -1, SSL: -1, Send: ms(e.Send), Wait: ms(e.Wait), Receive: ms(e.Receive)},
			Comment:         e.Error,
			Ref:             ref(e), Pod: e.Pod, Source: e.Source, Destination: e.Destination,
		}
		req := HARRequest{Method: e.Request.Method, URL: u, HTTPVersion: e.Proto, Cookies: []HARCookie{}, Headers: nameVals(e.Request.Header),
			QueryString: []HARNameVal{}, HeadersSize: -1, BodySize: e.Request.BodySize, Truncated: e.Request.Truncated, Redacted: e.Request.Redacted}
		if pu, err := url.Parse(u); err == nil {
			for k, vs := range pu.Query() {
				for _, v := range vs {
					req.QueryString = append(req.QueryString, HARNameVal{k, v})
				}
			}
			sort.Slice(req.QueryString, func(i, j int) bool { return req.QueryString[i].Name < req.QueryString[j].Name })
		}
		if e.Request.BodySize > 0 {
			text, enc := bodyText(e.Request.Body)
			req.PostData = &HARPostData{MimeType: orUnknown(e.Request.Header.Get("Content-Type")), Text: text}
			req.Encoding = enc
		}
		entry.Request = req
		resp := HARResponse{Status: 0, HTTPVersion: e.Proto, Cookies: []HARCookie{}, Headers: []HARNameVal{}, HeadersSize: -1, BodySize: -1,
			Content: HARContent{MimeType: "x-unknown"}}
		if r := e.Response; r != nil {
			text, enc := bodyText(r.Body)
			resp = HARResponse{Status: r.Status, StatusText: r.Reason, HTTPVersion: e.Proto, Cookies: []HARCookie{}, Headers: nameVals(r.Header),
				Content:     HARContent{Size: r.BodySize, MimeType: orUnknown(r.Header.Get("Content-Type")), Text: text, Encoding: enc},
				HeadersSize: -1, BodySize: r.BodySize, Truncated: r.Truncated, Redacted: r.Redacted}
			if resp.StatusText == "" {
				resp.StatusText = http.StatusText(r.Status)
			}
		}
		entry.Response = resp
		h.Log.Entries = append(h.Log.Entries, entry)
	}
	return h
}

func orUnknown(s string) string {
	if s == "" {
		return "x-unknown"
	}
	return s
}

func nameVals(h http.Header) []HARNameVal {
	out := []HARNameVal{}
	var keys []string
	for k := range h {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		for _, v := range h[k] {
			out = append(out, HARNameVal{k, v})
		}
	}
	return out
}

// bodyText returns a body as HAR text: as is when UTF-8, else base64.
func bodyText(b []byte) (text, encoding string) {
	if utf8.Valid(b) {
		return string(b), ""
	}
	return base64.StdEncoding.EncodeToString(b), "base64"
}

// ReadHAR reads a HAR document (tether's or a browser's) as exchanges.
func ReadHAR(r io.Reader) ([]*Exchange, error) {
	var h HAR
	dec := json.NewDecoder(r)
	if err := dec.Decode(&h); err != nil {
		return nil, fmt.Errorf("not a HAR file: %w", err)
	}
	if h.Log.Entries == nil {
		return nil, fmt.Errorf("not a HAR file: no log.entries")
	}
	var out []*Exchange
	for i, en := range h.Log.Entries {
		u, err := url.Parse(en.Request.URL)
		if err != nil || u.Host == "" || en.Request.Method == "" {
			return nil, fmt.Errorf("HAR entry %d: request URL %q or method %q is unusable", i+1, en.Request.URL, en.Request.Method)
		}
		started, _ := time.Parse(time.RFC3339Nano, en.StartedDateTime)
		e := &Exchange{ID: uint64(i + 1), Time: started, Pod: en.Pod, Source: en.Source, Destination: en.Destination, Proto: en.Request.HTTPVersion,
			Request: Message{Method: en.Request.Method, Target: u.RequestURI(), Host: u.Host, Header: header(en.Request.Headers),
				BodySize: en.Request.BodySize, Truncated: en.Request.Truncated, Redacted: en.Request.Redacted}}
		if pd := en.Request.PostData; pd != nil {
			body, err := decodeText(pd.Text, en.Request.Encoding)
			if err != nil {
				return nil, fmt.Errorf("HAR entry %d: request body: %w", i+1, err)
			}
			e.Request.Body = body
			if e.Request.BodySize < 0 {
				e.Request.BodySize = int64(len(body))
			}
		}
		if en.Response.Status > 0 {
			body, err := decodeText(en.Response.Content.Text, en.Response.Content.Encoding)
			if err != nil {
				return nil, fmt.Errorf("HAR entry %d: response body: %w", i+1, err)
			}
			e.Response = &Message{Status: en.Response.Status, Reason: en.Response.StatusText, Header: header(en.Response.Headers),
				Body: body, BodySize: int64(len(body)), Truncated: en.Response.Truncated, Redacted: en.Response.Redacted}
		}
		out = append(out, e)
	}
	return out, nil
}

func header(nv []HARNameVal) http.Header {
	h := http.Header{}
	for _, p := range nv {
		if strings.HasPrefix(p.Name, ":") {
			continue // HTTP/2 pseudo-headers some browsers export
		}
		h.Add(p.Name, p.Value)
	}
	return h
}

func decodeText(text, encoding string) ([]byte, error) {
	if encoding == "base64" {
		return base64.StdEncoding.DecodeString(text)
	}
	return []byte(text), nil
}
