package doctor

import (
	"fmt"
	"strings"
)

// checkHost: whether `tether run`'s namespace mode can work on this
// machine (netns.Check: user namespaces, AppArmor's restriction,
// /dev/net/tun). A failure is a warning: run falls back to proxy mode.
func (o *DoctorOptions) checkHost() Result {
	r := Result{Check: "run on this machine"}
	if o.GOOS != "linux" {
		r.Status = StatusSkipped
		r.Detail = fmt.Sprintf("tether run's namespace mode needs Linux (this is %s): run uses its proxy mode here (--network proxy: SOCKS5 and HTTP proxies, the cluster's environment), read docs/run.md", o.GOOS)
		return r
	}
	err := o.HostCheck()
	if err == nil {
		r.Status, r.Detail = StatusOK, "user namespaces are allowed and /dev/net/tun opens: tether run's namespace mode works"
		return r
	}
	msg := err.Error()
	r.Status = StatusWarn
	// netns.Check's messages are "what is wrong: the fix; meanwhile ...".
	if what, fix, ok := strings.Cut(msg, ": "); ok {
		r.Detail = what + "; tether run falls back to --network proxy"
		r.Fix = fix
	} else {
		r.Detail = msg
		r.Fix = "read docs/run.md; `tether run --network proxy` works meanwhile"
	}
	return r
}
