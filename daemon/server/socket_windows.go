//go:build windows

package server

// restrictSocket does nothing on Windows, where file modes do not apply to
// sockets: the socket lies in the user's %LocalAppData%, whose ACL lets
// only that user (and administrators) reach it, and the socket inherits it.
func restrictSocket(string) error { return nil }
