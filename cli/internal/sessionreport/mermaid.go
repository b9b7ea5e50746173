package sessionreport

import (
	"fmt"
	"strings"
)

// Mermaid is the graph as a Mermaid flowchart (the body of a ```mermaid
// block). Node IDs are the graph's own (n0, n1, ...); every label is
// quoted and entity-coded (mermaidText), so recorded text cannot end a
// label, add a node or link, or carry HTML.
func Mermaid(g Graph) string {
	var b strings.Builder
	b.WriteString("flowchart LR\n")
	for _, n := range g.Nodes {
		label := mermaidText(n.Title)
		for _, l := range n.Lines {
			label += "<br/>" + mermaidText(l)
		}
		open, close := "[", "]"
		if n.Kind == "service" {
			open, close = "([", "])"
		}
		fmt.Fprintf(&b, "  %s%s\"%s\"%s\n", n.ID, open, label, close)
	}
	for _, e := range g.Edges {
		arrow := "-->"
		if e.State == StateBroken {
			arrow = "-.->"
		}
		if e.Label != "" {
			fmt.Fprintf(&b, "  %s %s|\"%s\"| %s\n", e.From, arrow, mermaidText(e.Label), e.To)
		} else {
			fmt.Fprintf(&b, "  %s %s %s\n", e.From, arrow, e.To)
		}
	}
	b.WriteString("  classDef ok fill:#e6f4ea,stroke:#1e8e3e\n  classDef warn fill:#fef7e0,stroke:#f9ab00\n" +
		"  classDef broken fill:#fce8e6,stroke:#d93025,stroke-width:3px\n")
	for _, n := range g.Nodes {
		if n.State != StateNone {
			fmt.Fprintf(&b, "  class %s %s\n", n.ID, n.State)
		}
	}
	for i, e := range g.Edges {
		if e.State == StateBroken {
			fmt.Fprintf(&b, "  linkStyle %d stroke:#d93025,stroke-width:3px\n", i)
		}
	}
	return b.String()
}

// mermaidText writes s for inside a quoted Mermaid label: letters, digits
// and plain punctuation as they are, everything else as an entity code
// (#60; for '<'), which Mermaid shows as the character and never parses.
func mermaidText(s string) string {
	var b strings.Builder
	for _, r := range p(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', strings.ContainsRune(" .,:/-_=+>()%'", r) && r != '>':
			b.WriteRune(r)
		default:
			fmt.Fprintf(&b, "#%d;", r)
		}
	}
	return b.String()
}
