package daemon

import (
	"time"

	"github.com/tetherkube/tether/internal/errdefs"
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

// NoSessionReason marks the error of a session call in a namespace that
// has no session; errors.Is(err, ErrNoSession) tells it on both sides.
const NoSessionReason = "NO_SESSION"

// ErrNoSession: the namespace has no session.
var ErrNoSession = errdefs.New(errdefs.ErrUser, NoSessionReason, "no session")

// SessionLogRequest reads a session's log, appending Append first when set.
type SessionLogRequest struct {
	Namespace string        `json:"namespace"`
	Append    *SessionEvent `json:"append,omitempty"`
}

// SessionLog is what was done during a session, oldest first.
type SessionLog struct {
	Session SessionInfo    `json:"session"`
	Events  []SessionEvent `json:"events"`
}

// Kinds of session events.
const (
	EventReproduce = "reproduce"
	EventRollback  = "rollback"
)

// SessionEvent is something done during a session, kept in the cluster
// with it: a `tether reproduce` run (its counts) or a rollback (its result).
type SessionEvent struct {
	Kind      string                 `json:"kind"`
	At        time.Time              `json:"at"`
	By        string                 `json:"by,omitempty"`
	Reproduce *ReproduceRecord       `json:"reproduce,omitempty"`
	Rollback  *SessionRollbackResult `json:"rollback,omitempty"`
	// Error says why a rollback failed or was refused.
	Error string `json:"error,omitempty"`
}

// ReproduceRecord is one reproduce run: where, what failure, how often.
type ReproduceRecord struct {
	Workload string           `json:"workload,omitempty"`
	To       string           `json:"to"`
	Expect   []string         `json:"expect,omitempty"` // empty: each request's recorded answer
	Count    int              `json:"count"`
	Recurred int              `json:"recurred"`
	Answers  int              `json:"answers"`
	Skipped  int              `json:"skipped,omitempty"`
	Requests []ReproduceCount `json:"requests,omitempty"`
}

// ReproduceCount is one request's count in a reproduce run.
type ReproduceCount struct {
	Ref      string `json:"ref"`
	Method   string `json:"method"`
	Target   string `json:"target"`
	Recurred int    `json:"recurred"`
	Answers  int    `json:"answers"`
}

func SessionEventToProto(e SessionEvent) *daemonv1.SessionEvent {
	p := &daemonv1.SessionEvent{Kind: e.Kind, By: e.By, Error: e.Error}
	if !e.At.IsZero() {
		p.AtUnixNano = e.At.UnixNano()
	}
	if r := e.Reproduce; r != nil {
		p.Reproduce = &daemonv1.ReproduceRecord{Workload: r.Workload, To: r.To, Expect: r.Expect, Count: int32(r.Count),
			Recurred: int32(r.Recurred), Answers: int32(r.Answers), Skipped: int32(r.Skipped)}
		for _, c := range r.Requests {
			p.Reproduce.Requests = append(p.Reproduce.Requests, &daemonv1.ReproduceCount{Ref: c.Ref, Method: c.Method, Target: c.Target,
				Recurred: int32(c.Recurred), Answers: int32(c.Answers)})
		}
	}
	if e.Rollback != nil {
		p.Rollback = SessionRollbackResultToProto(*e.Rollback)
	}
	return p
}

func SessionEventFromProto(p *daemonv1.SessionEvent) SessionEvent {
	e := SessionEvent{Kind: p.GetKind(), By: p.GetBy(), Error: p.GetError()}
	if n := p.GetAtUnixNano(); n != 0 {
		e.At = time.Unix(0, n).UTC()
	}
	if r := p.GetReproduce(); r != nil {
		e.Reproduce = &ReproduceRecord{Workload: r.GetWorkload(), To: r.GetTo(), Expect: r.GetExpect(), Count: int(r.GetCount()),
			Recurred: int(r.GetRecurred()), Answers: int(r.GetAnswers()), Skipped: int(r.GetSkipped())}
		for _, c := range r.GetRequests() {
			e.Reproduce.Requests = append(e.Reproduce.Requests, ReproduceCount{Ref: c.GetRef(), Method: c.GetMethod(), Target: c.GetTarget(),
				Recurred: int(c.GetRecurred()), Answers: int(c.GetAnswers())})
		}
	}
	if r := p.GetRollback(); r != nil {
		rb := SessionRollbackResultFromProto(r)
		e.Rollback = &rb
	}
	return e
}

func SessionLogRequestToProto(r SessionLogRequest) *daemonv1.SessionLogRequest {
	p := &daemonv1.SessionLogRequest{Namespace: r.Namespace}
	if r.Append != nil {
		p.Append = SessionEventToProto(*r.Append)
	}
	return p
}

func SessionLogRequestFromProto(p *daemonv1.SessionLogRequest) SessionLogRequest {
	r := SessionLogRequest{Namespace: p.GetNamespace()}
	if a := p.GetAppend(); a != nil {
		e := SessionEventFromProto(a)
		r.Append = &e
	}
	return r
}

func SessionLogToProto(l SessionLog) *daemonv1.SessionLogResponse {
	p := &daemonv1.SessionLogResponse{Session: SessionInfoToProto(l.Session)}
	for _, e := range l.Events {
		p.Events = append(p.Events, SessionEventToProto(e))
	}
	return p
}

func SessionLogFromProto(p *daemonv1.SessionLogResponse) SessionLog {
	l := SessionLog{Session: SessionInfoFromProto(p.GetSession()), Events: []SessionEvent{}}
	for _, e := range p.GetEvents() {
		l.Events = append(l.Events, SessionEventFromProto(e))
	}
	return l
}
