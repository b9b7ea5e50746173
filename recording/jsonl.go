package recording

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
)

// WriteJSONL writes exchanges in the recording format, one JSON document
// per line: what `tether requests save` writes and the agent sends.
func WriteJSONL(w io.Writer, exchanges []*Exchange) error {
	enc := json.NewEncoder(w)
	for _, e := range exchanges {
		if err := enc.Encode(e); err != nil {
			return err
		}
	}
	return nil
}

// ReadJSONL reads exchanges written by WriteJSONL.
func ReadJSONL(r io.Reader) ([]*Exchange, error) {
	dec := json.NewDecoder(bufio.NewReader(r))
	var out []*Exchange
	for dec.More() {
		var e Exchange
		if err := dec.Decode(&e); err != nil {
			return nil, fmt.Errorf("exchange %d: %w", len(out)+1, err)
		}
		if e.Request.Method == "" || e.Request.Target == "" {
			return nil, fmt.Errorf("exchange %d has no request method or target", len(out)+1)
		}
		out = append(out, &e)
	}
	return out, nil
}
