package daemon

import (
	"time"

	daemonv1 "github.com/tetherkube/tether/proto/daemon/v1"
)

// SessionStartRequest starts a session in a namespace (docs/session.md).
type SessionStartRequest struct {
	Namespace string   `json:"namespace"`
	Name      string   `json:"name,omitempty"`
	Include   []string `json:"include,omitempty"` // KIND/NAME; empty: every object of the session's kinds
}

// SessionInfo describes a session.
type SessionInfo struct {
	Name      string    `json:"name"`
	Namespace string    `json:"namespace"`
	Since     time.Time `json:"since"`
	By        string    `json:"by"`
	Objects   int       `json:"objects"`
	// Hash is the SHA-256 of the snapshot, checked at every read.
	Hash    string   `json:"hash"`
	Include []string `json:"include,omitempty"`
}

// SessionDiff is what changed since a session started.
type SessionDiff struct {
	Session SessionInfo     `json:"session"`
	Changes []SessionChange `json:"changes"`
}

// SessionChange is one object that differs from its snapshot.
type SessionChange struct {
	Object string `json:"object"` // kind/name
	Kind   string `json:"kind"`
	Name   string `json:"name"`
	// Change is modified, created or deleted.
	Change string `json:"change"`
	// Paths are the fields that differ (modified only).
	Paths []string `json:"paths,omitempty"`
	// Diff is a unified diff of the YAML forms; Secrets' values show as
	// their length and hash.
	Diff string `json:"diff,omitempty"`
}

// SessionRollbackRequest restores a namespace's session.
type SessionRollbackRequest struct {
	Namespace string `json:"namespace"`
	// Force deletes and recreates objects that cannot be restored in place.
	Force          bool  `json:"force,omitempty"`
	RolloutTimeout int64 `json:"rolloutTimeoutSeconds,omitempty"`
}

// SessionRollbackResult is what a session's rollback did.
type SessionRollbackResult struct {
	Session SessionInfo `json:"session"`
	// Tether are tether's own changes made during the session (intercepts,
	// recordings), rolled back first as `tether rollback` does.
	Tether []RollbackResult `json:"tether,omitempty"`
	Steps  []SessionStep    `json:"steps"`
	// Verified: every object matched its snapshot afterwards.
	Verified bool `json:"verified"`
}

// SessionStep is one object a rollback restored, created or deleted.
type SessionStep struct {
	Object string `json:"object"`
	// Action is update, create, delete or replace.
	Action string `json:"action"`
	Reason string `json:"reason,omitempty"`
	Note   string `json:"note,omitempty"`
}

func SessionInfoToProto(i SessionInfo) *daemonv1.SessionInfo {
	p := &daemonv1.SessionInfo{Name: i.Name, Namespace: i.Namespace, By: i.By, Objects: int32(i.Objects), Hash: i.Hash, Include: i.Include}
	if !i.Since.IsZero() {
		p.SinceUnixNano = i.Since.UnixNano()
	}
	return p
}

func SessionInfoFromProto(p *daemonv1.SessionInfo) SessionInfo {
	i := SessionInfo{Name: p.GetName(), Namespace: p.GetNamespace(), By: p.GetBy(), Objects: int(p.GetObjects()), Hash: p.GetHash(), Include: p.GetInclude()}
	if n := p.GetSinceUnixNano(); n != 0 {
		i.Since = time.Unix(0, n).UTC()
	}
	return i
}

func SessionDiffToProto(d SessionDiff) *daemonv1.SessionDiffResponse {
	p := &daemonv1.SessionDiffResponse{Session: SessionInfoToProto(d.Session)}
	for _, c := range d.Changes {
		p.Changes = append(p.Changes, &daemonv1.SessionChange{Object: c.Object, Kind: c.Kind, Name: c.Name, Change: c.Change, Paths: c.Paths, Diff: c.Diff})
	}
	return p
}

func SessionDiffFromProto(p *daemonv1.SessionDiffResponse) SessionDiff {
	d := SessionDiff{Session: SessionInfoFromProto(p.GetSession()), Changes: []SessionChange{}}
	for _, c := range p.GetChanges() {
		d.Changes = append(d.Changes, SessionChange{Object: c.GetObject(), Kind: c.GetKind(), Name: c.GetName(), Change: c.GetChange(), Paths: c.GetPaths(), Diff: c.GetDiff()})
	}
	return d
}

func SessionRollbackRequestToProto(r SessionRollbackRequest) *daemonv1.SessionRollbackRequest {
	return &daemonv1.SessionRollbackRequest{Namespace: r.Namespace, Force: r.Force, RolloutTimeoutSeconds: r.RolloutTimeout}
}

func SessionRollbackRequestFromProto(p *daemonv1.SessionRollbackRequest) SessionRollbackRequest {
	return SessionRollbackRequest{Namespace: p.GetNamespace(), Force: p.GetForce(), RolloutTimeout: p.GetRolloutTimeoutSeconds()}
}

func SessionRollbackResultToProto(r SessionRollbackResult) *daemonv1.SessionRollbackResult {
	p := &daemonv1.SessionRollbackResult{Session: SessionInfoToProto(r.Session), Verified: r.Verified,
		Tether: RollbackResultsToProto(r.Tether).GetResults()}
	for _, s := range r.Steps {
		p.Steps = append(p.Steps, &daemonv1.SessionStep{Object: s.Object, Action: s.Action, Reason: s.Reason, Note: s.Note})
	}
	return p
}

func SessionRollbackResultFromProto(p *daemonv1.SessionRollbackResult) SessionRollbackResult {
	r := SessionRollbackResult{Session: SessionInfoFromProto(p.GetSession()), Verified: p.GetVerified(), Steps: []SessionStep{},
		Tether: RollbackResultsFromProto(&daemonv1.RollbackResponse{Results: p.GetTether()})}
	for _, s := range p.GetSteps() {
		r.Steps = append(r.Steps, SessionStep{Object: s.GetObject(), Action: s.GetAction(), Reason: s.GetReason(), Note: s.GetNote()})
	}
	return r
}
