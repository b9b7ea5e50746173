package agent

import (
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
	Connections uint64 `json:"connections"`
	Exchanges   uint64 `json:"exchanges"`
	Evicted     uint64 `json:"evicted"`
	NotHTTP     uint64 `json:"notHTTP"`
	// Limited counts connections no longer recorded because what they held
	// reached their share of the budget; they were still forwarded.
	Limited       uint64   `json:"limited"`
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
