package recording

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Filter selects exchanges. The zero Filter selects every one.
type Filter struct {
	// Status is a status code ("404") or a class ("5xx"); "" for any.
	Status string `json:"status,omitempty"`
	// Method matches without regard to case.
	Method string `json:"method,omitempty"`
	// PathPrefix matches the start of the request target.
	PathPrefix string `json:"pathPrefix,omitempty"`
	// Since keeps exchanges that started at or after it.
	Since time.Time `json:"since,omitempty"`
	// IDs keeps only these exchanges.
	IDs []uint64 `json:"ids,omitempty"`
}

// Validate checks the filter's fields, saying what is wrong.
func (f Filter) Validate() error {
	if f.Status == "" {
		return nil
	}
	s := strings.ToLower(f.Status)
	if len(s) == 3 && s[0] >= '1' && s[0] <= '5' && s[1:] == "xx" {
		return nil
	}
	if n, err := strconv.Atoi(s); err == nil && n >= 100 && n <= 599 {
		return nil
	}
	return fmt.Errorf("status %q: write a code such as 404 or a class such as 5xx", f.Status)
}

// IsZero reports whether f selects every exchange.
func (f Filter) IsZero() bool {
	return f.Status == "" && f.Method == "" && f.PathPrefix == "" && f.Since.IsZero() && len(f.IDs) == 0
}

// Match reports whether e is selected.
func (f Filter) Match(e *Exchange) bool {
	if f.Method != "" && !strings.EqualFold(f.Method, e.Request.Method) {
		return false
	}
	if f.PathPrefix != "" && !strings.HasPrefix(e.Request.Target, f.PathPrefix) {
		return false
	}
	if !f.Since.IsZero() && e.Time.Before(f.Since) {
		return false
	}
	if len(f.IDs) > 0 {
		found := false
		for _, id := range f.IDs {
			found = found || id == e.ID
		}
		if !found {
			return false
		}
	}
	if f.Status != "" {
		s := strings.ToLower(f.Status)
		status := e.Status()
		if strings.HasSuffix(s, "xx") {
			return status/100 == int(s[0]-'0')
		}
		n, _ := strconv.Atoi(s)
		return status == n
	}
	return true
}
