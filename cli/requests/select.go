package requests

import (
	"context"
	"io"
	"time"

	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/recording"
)

// Selection names recorded exchanges, as `tether replay` and `tether
// reproduce` take them: a file (From), or a workload's recording, by IDs
// (Refs) or by the filter flags.
type Selection struct {
	From     string
	ReadFile func(path string) ([]*recording.Exchange, error)

	Ns, Workload string
	Refs         []string
	Filter       FilterFlags
	// Now is what --since counts back from.
	Now time.Time
	// ErrOut gets the warnings of agents that could not be read.
	ErrOut io.Writer
}

// Select returns the exchanges s names and their names.
func Select(ctx context.Context, client daemon.Service, s Selection) ([]*recording.Exchange, []string, error) {
	if s.From != "" {
		exs, err := s.ReadFile(s.From)
		if err != nil {
			return nil, nil, err
		}
		var refs []string
		for _, e := range exs {
			refs = append(refs, Ref(e))
		}
		return exs, refs, nil
	}
	f, err := s.Filter.Filter(s.Now)
	if err != nil {
		return nil, nil, err
	}
	for _, r := range s.Refs {
		_, id, err := ParseRef(r)
		if err != nil {
			return nil, nil, err
		}
		f.IDs = append(f.IDs, id)
	}
	got, _, err := Read(ctx, client, daemon.RequestsRequest{Namespace: s.Ns, Workload: s.Workload, Filter: f, Limit: s.Filter.Limit}, s.ErrOut)
	if err != nil {
		return nil, nil, err
	}
	if len(s.Refs) > 0 {
		var picked []*recording.Exchange
		for _, r := range s.Refs {
			e, err := Find(r, got)
			if err != nil {
				return nil, nil, err
			}
			picked = append(picked, e)
		}
		got = picked
	}
	var refs []string
	for _, e := range got {
		refs = append(refs, Ref(e))
	}
	return got, refs, nil
}
