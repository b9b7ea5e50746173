package replay

import (
	"bytes"
	"slices"

	"github.com/tetherkube/tether/recording"
)

// MirrorPair is the answer a mirror intercept's laptop gave to its copy of
// a request beside the app's answer to the request itself.
type MirrorPair struct {
	App, Mirror *recording.Exchange
	// Diff is how the laptop's answer differs from the app's (Compare,
	// the app's answer taken as the reference).
	Diff *Diff
}

// PairMirrors pairs each copy a mirror sent (Destination ToMirror) with
// the app's exchange of the same request: the same pod, method, target,
// host and body, recorded at or before the copy (a copy leaves after the
// app's answer). Each app exchange pairs at most once, with the earliest
// copy after it. Copies whose app exchange is no longer held (evicted, or
// recorded by another agent) are returned apart, oldest first; ignore
// names headers the diffs skip besides VolatileHeaders.
func PairMirrors(exchanges []*recording.Exchange, ignore []string) (pairs []MirrorPair, unpaired []*recording.Exchange) {
	sorted := slices.Clone(exchanges)
	slices.SortStableFunc(sorted, func(a, b *recording.Exchange) int { return a.Time.Compare(b.Time) })
	type key struct{ pod, method, target, host string }
	waiting := map[key][]*recording.Exchange{} // the app's exchanges not paired yet, oldest first
	for _, e := range sorted {
		k := key{e.Pod, e.Request.Method, e.Request.Target, e.Request.Host}
		switch e.Destination {
		case recording.ToApp:
			waiting[k] = append(waiting[k], e)
		case recording.ToMirror:
			apps := waiting[k]
			i := slices.IndexFunc(apps, func(a *recording.Exchange) bool { return sameRequest(a, e) })
			if i < 0 {
				unpaired = append(unpaired, e)
				continue
			}
			app := apps[i]
			waiting[k] = slices.Delete(apps, i, i+1)
			var d *Diff
			if e.Response != nil {
				d = Compare(app.Response, e.Response, ignore)
			} else {
				d = &Diff{NotCompared: []string{"the laptop gave no answer: " + orNone(e.Error)}}
			}
			pairs = append(pairs, MirrorPair{App: app, Mirror: e, Diff: d})
		}
	}
	return pairs, unpaired
}

// sameRequest: the copy carries the app's request body, recorded alike.
func sameRequest(app, copy *recording.Exchange) bool {
	a, c := app.Request, copy.Request
	return a.BodySize == c.BodySize && a.Truncated == c.Truncated && bytes.Equal(a.Body, c.Body)
}
