package agent

import (
	"context"
	"errors"

	"github.com/tetherkube/tether/internal/errdefs"
	"github.com/tetherkube/tether/recording"
)

// ExchangesRequest selects recorded exchanges.
type ExchangesRequest struct {
	Filter recording.Filter
	// WithoutBodies leaves the bodies out, for listing.
	WithoutBodies bool
	// Limit keeps the newest N that match (0: all).
	Limit int
}

// RecordingStats describe the agent's recorder.
type RecordingStats struct {
	Connections   uint64   `json:"connections"`
	Exchanges     uint64   `json:"exchanges"`
	Evicted       uint64   `json:"evicted"`
	NotHTTP       uint64   `json:"notHTTP"`
	Malformed     uint64   `json:"malformed"`
	Upgraded      uint64   `json:"upgraded"`
	StoredBytes   uint64   `json:"storedBytes"`
	InflightBytes uint64   `json:"inflightBytes"`
	BudgetBytes   uint64   `json:"budgetBytes"`
	Held          uint64   `json:"held"`
	BodyCap       uint64   `json:"bodyCap"`
	RedactionOff  bool     `json:"redactionOff"`
	RedactedNames []string `json:"redactedNames,omitempty"`
}

// ErrNotRecording: the agent runs with recording off.
var ErrNotRecording = errdefs.New(errdefs.ErrUser, "NOT_RECORDING", "this agent does not record (it runs with --no-record)")

func (s *sessionService) Exchanges(ctx context.Context, req ExchangesRequest, emit func(*recording.Exchange) error) (RecordingStats, error) {
	a := s.agent
	if a.ring == nil {
		return RecordingStats{}, ErrNotRecording
	}
	if err := req.Filter.Validate(); err != nil {
		return RecordingStats{}, errors.Join(ErrBadProbe, err)
	}
	matched := a.ring.Exchanges(req.Filter.Match)
	if req.Limit > 0 && len(matched) > req.Limit {
		matched = matched[len(matched)-req.Limit:]
	}
	for _, e := range matched {
		if err := ctx.Err(); err != nil {
			return RecordingStats{}, err
		}
		if req.WithoutBodies {
			c := *e
			c.Request.Body = nil
			if e.Response != nil {
				r := *e.Response
				r.Body = nil
				c.Response = &r
			}
			e = &c
		}
		if err := emit(e); err != nil {
			return RecordingStats{}, err
		}
	}
	return a.recordingStats(), nil
}

func (a *Agent) recordingStats() RecordingStats {
	st := a.ring.Stats()
	r := a.cfg.Record
	return RecordingStats{
		Connections: st.Connections, Exchanges: st.Exchanges, Evicted: st.Evicted, NotHTTP: st.NotHTTP,
		Malformed: st.Malformed, Upgraded: st.Upgraded, StoredBytes: uint64(st.StoredBytes), InflightBytes: uint64(st.InflightBytes),
		BudgetBytes: uint64(st.BudgetBytes), Held: uint64(st.Held), BodyCap: uint64(r.BodyCap),
		RedactionOff: r.Redactor.Off, RedactedNames: append(append([]string(nil), recording.DefaultRedactedHeaders...), r.Redactor.Names...),
	}
}
