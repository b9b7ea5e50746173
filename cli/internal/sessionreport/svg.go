package sessionreport

import (
	"fmt"
	"html"
	"strings"
)

// SVG draws the graph as an inline SVG element: the source pod on the
// left, the Service in the middle, its endpoints stacked on the right,
// each box and arrow coloured by how it fared, the first break in red.
// Every text is HTML-escaped; nothing in it runs.
func SVG(g Graph) string {
	const (
		boxW, lineH, pad = 230, 16, 8
		gapX             = 190
		gapY             = 18
		top              = 28
	)
	height := func(n Node) int { return pad*2 + lineH*(1+len(n.Lines)) }
	type box struct{ x, y, h int }
	pos := map[string]box{}
	col := func(n Node) int {
		switch n.Kind {
		case "pod":
			return 0
		case "service":
			return 1
		}
		return 2
	}
	// Endpoints stack; the pod and the Service sit level with their middle.
	y, stackH := top, 0
	for _, n := range g.Nodes {
		if col(n) == 2 {
			pos[n.ID] = box{x: 20 + 2*(boxW+gapX), y: y, h: height(n)}
			y += height(n) + gapY
			stackH = y - gapY - top
		}
	}
	for _, n := range g.Nodes {
		if c := col(n); c < 2 {
			h := height(n)
			pos[n.ID] = box{x: 20 + c*(boxW+gapX), y: top + max(0, (stackH-h)/2), h: h}
		}
	}
	width := 20 + 3*boxW + 2*gapX + 20
	total := top + 20
	for _, b := range pos {
		total = max(total, b.y+b.h+20)
	}

	var s strings.Builder
	fmt.Fprintf(&s, `<svg xmlns="http://www.w3.org/2000/svg" id="path-diagram" role="img" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`,
		width, total, width, total)
	fmt.Fprintf(&s, "<title>%s</title>", esc("the traced path: "+g.Conclusion))
	s.WriteString(`<defs>`)
	for _, st := range []State{StateOK, StateWarn, StateBroken, StateNone} {
		fmt.Fprintf(&s, `<marker id="arrow-%s" viewBox="0 0 10 10" refX="10" refY="5" markerUnits="userSpaceOnUse" markerWidth="10" markerHeight="10" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="%s"/></marker>`,
			st, stroke(st))
	}
	s.WriteString(`</defs>`)
	for i, e := range g.Edges {
		a, b := pos[e.From], pos[e.To]
		x1, y1 := a.x+boxW, a.y+a.h/2
		x2, y2 := b.x, b.y+b.h/2
		dash := ""
		if e.State == StateBroken {
			dash = ` stroke-dasharray="6 4"`
		}
		fmt.Fprintf(&s, `<g class="edge %s" id="edge-%d"><line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="%d"%s marker-end="url(#arrow-%s)"/>`,
			e.State, i, x1, y1, x2, y2, stroke(e.State), strokeWidth(e.State), dash, e.State)
		if e.Label != "" {
			mx, my := (x1+x2)/2, (y1+y2)/2-6
			lines := wrap(p(e.Label), 26)
			for j, l := range lines {
				fmt.Fprintf(&s, `<text x="%d" y="%d" text-anchor="middle" font-size="11" fill="%s">%s</text>`, mx, my-13*(len(lines)-1-j), text(e.State), esc(l))
			}
		}
		s.WriteString(`</g>`)
	}
	for _, n := range g.Nodes {
		b := pos[n.ID]
		fmt.Fprintf(&s, `<g class="node %s %s" id="node-%s"><rect x="%d" y="%d" width="%d" height="%d" rx="6" fill="%s" stroke="%s" stroke-width="%d"/>`,
			n.Kind, n.State, n.ID, b.x, b.y, boxW, b.h, fill(n.State), stroke(n.State), strokeWidth(n.State))
		fmt.Fprintf(&s, `<text x="%d" y="%d" font-weight="bold">%s</text>`, b.x+pad, b.y+pad+12, esc(clip(p(n.Title), 34)))
		for i, l := range n.Lines {
			fmt.Fprintf(&s, `<text x="%d" y="%d">%s</text>`, b.x+pad, b.y+pad+12+lineH*(i+1), esc(clip(p(l), 36)))
		}
		s.WriteString(`</g>`)
	}
	s.WriteString(`</svg>`)
	return s.String()
}

func esc(s string) string { return html.EscapeString(s) }

// clip shortens s to n runes, marking the cut.
func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// wrap cuts s into lines of about n runes, at spaces where it can.
func wrap(s string, n int) []string {
	var lines []string
	cur := ""
	for _, w := range strings.Fields(s) {
		for len([]rune(w)) > n {
			r := []rune(w)
			if cur != "" {
				lines, cur = append(lines, cur), ""
			}
			lines, w = append(lines, string(r[:n])), string(r[n:])
		}
		switch {
		case cur == "":
			cur = w
		case len([]rune(cur))+1+len([]rune(w)) <= n:
			cur += " " + w
		default:
			lines, cur = append(lines, cur), w
		}
	}
	if cur != "" {
		lines = append(lines, cur)
	}
	if len(lines) > 4 {
		lines = append(lines[:3], clip(strings.Join(lines[3:], " "), n))
	}
	return lines
}

func fill(s State) string {
	switch s {
	case StateOK:
		return "#e6f4ea"
	case StateWarn:
		return "#fef7e0"
	case StateBroken:
		return "#fce8e6"
	}
	return "#f1f3f4"
}

func stroke(s State) string {
	switch s {
	case StateOK:
		return "#1e8e3e"
	case StateWarn:
		return "#e37400"
	case StateBroken:
		return "#d93025"
	}
	return "#5f6368"
}

func text(s State) string {
	if s == StateBroken {
		return "#a50e0e"
	}
	return "#202124"
}

func strokeWidth(s State) int {
	if s == StateBroken {
		return 3
	}
	return 1
}
