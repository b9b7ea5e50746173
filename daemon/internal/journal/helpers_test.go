package journal_test

import (
	"context"
	"testing"

	"github.com/tetherkube/tether/daemon/internal/journal"
)

// addService has two daemons add one Service each to the journal, the
// second one's first write conflicting with the first one's.
func addService(t *testing.T, s journal.Store, na string, a journal.ServiceEntry, nb string, b journal.ServiceEntry) {
	t.Helper()
	ctx := context.Background()
	first := true
	_, err := s.Update(ctx, orders, func(e *journal.Entry) error {
		if first {
			first = false
			// The other daemon writes between this one's read and write.
			if _, err := s.Update(ctx, orders, func(e *journal.Entry) error {
				e.Services = map[string]journal.ServiceEntry{na: a}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}
		if e.Services == nil {
			e.Services = map[string]journal.ServiceEntry{}
		}
		e.Services[nb] = b
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
