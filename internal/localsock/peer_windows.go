package localsock

import (
	"io/fs"
	"net"
)

// checkOwner on Windows relies on the folder's ACL: it lives in the user's
// profile (%LocalAppData%), which other users cannot enter by default.
func checkOwner(string, fs.FileInfo) error { return nil }

// CheckPeer on Windows cannot read a unix socket peer's identity (AF_UNIX
// there has no SO_PEERCRED); the folder's ACL is the guard.
func CheckPeer(net.Conn) error { return nil }

// restrict does nothing on Windows, where file modes do not apply to
// sockets: the socket inherits its folder's ACL.
func restrict(string) error { return nil }

func ownedByUser(fs.FileInfo) bool { return true }
