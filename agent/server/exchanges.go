package server

import (
	"context"
	"errors"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/recording"
)

// exchangeBatchBytes bounds a batch of exchanges, by their recording size.
const exchangeBatchBytes = 512 << 10

// Exchanges emits the matching exchanges in batches of up to
// exchangeBatchBytes (one exchange always fits).
func (s *sessionService) Exchanges(ctx context.Context, req agent.ExchangesRequest, emit func([]*recording.Exchange) error) (agent.RecordingStats, error) {
	a := s.agent
	if err := a.serving("Exchanges", agent.JobIntercept); err != nil {
		return agent.RecordingStats{}, err
	}
	if a.ring == nil {
		return agent.RecordingStats{}, agent.ErrNotRecording
	}
	if err := req.Filter.Validate(); err != nil {
		return agent.RecordingStats{}, errors.Join(agent.ErrBadProbe, err)
	}
	// One exchange decoded at a time (a full ring decoded at once takes
	// several times the budget, past the container's memory limit); when
	// only the last req.Limit are asked for, from the first of them on.
	held := a.ring.Held()
	var keep func(*recording.Exchange) bool
	if !req.Filter.IsZero() {
		keep = req.Filter.Match
	}
	if req.Limit > 0 {
		var err error
		if held, err = held.Last(keep, req.Limit); err != nil {
			return agent.RecordingStats{}, err
		}
	}
	var batch []*recording.Exchange
	size := 0
	err := held.Each(keep, func(e *recording.Exchange) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if req.WithoutBodies { // the exchanges are this call's own copies
			e.Request.Body = nil
			if e.Response != nil {
				e.Response.Body = nil
			}
		}
		if len(batch) > 0 && size+e.Size() > exchangeBatchBytes {
			if err := emit(batch); err != nil {
				return err
			}
			batch, size = nil, 0
		}
		batch, size = append(batch, e), size+e.Size()
		return nil
	})
	if err != nil {
		return agent.RecordingStats{}, err
	}
	if len(batch) > 0 {
		if err := emit(batch); err != nil {
			return agent.RecordingStats{}, err
		}
	}
	return a.recordingStats(), nil
}

func (a *Agent) recordingStats() agent.RecordingStats {
	st := a.ring.Stats()
	r := a.cfg.Record
	return agent.RecordingStats{
		Connections: st.Connections, Exchanges: st.Exchanges, Evicted: st.Evicted, NotHTTP: st.NotHTTP, Limited: st.Limited,
		Malformed: st.Malformed, Upgraded: st.Upgraded, StoredBytes: uint64(st.StoredBytes), InflightBytes: uint64(st.InflightBytes),
		BudgetBytes: uint64(st.BudgetBytes), Held: uint64(st.Held), BodyCap: uint64(r.BodyCap),
		RedactionOff: r.Redactor.Off, RedactedNames: append(append([]string(nil), recording.DefaultRedactedHeaders...), r.Redactor.Names...),
	}
}
