package session

import (
	"fmt"
	"strings"
)

// maxCells bounds the line diff's table (lines of a times lines of b);
// past it the whole object is shown as replaced.
const maxCells = 4 << 20

// hunks returns the unified diff hunks turning a into b (lines ending in
// "\n", the last one may not), with ctx lines of context.
func hunks(a, b []string, ctx int) string {
	ops := lineOps(a, b)
	var sb strings.Builder
	for i := 0; i < len(ops); {
		if ops[i].kind == ' ' {
			i++
			continue
		}
		// A hunk: from ctx lines before this change to ctx lines after the
		// last change that is at most 2*ctx unchanged lines from the next.
		start := max(i-ctx, 0)
		end := i
		for j := i; j < len(ops); j++ {
			if ops[j].kind != ' ' {
				end = j
				continue
			}
			if j-end > 2*ctx {
				break
			}
		}
		stop := min(end+ctx+1, len(ops))
		aStart, bStart := ops[start].ai, ops[start].bi
		var aN, bN int
		var body strings.Builder
		for _, op := range ops[start:stop] {
			if op.kind != '+' {
				aN++
			}
			if op.kind != '-' {
				bN++
			}
			line := op.line
			if !strings.HasSuffix(line, "\n") {
				line += "\n"
			}
			body.WriteByte(op.kind)
			body.WriteString(line)
		}
		fmt.Fprintf(&sb, "@@ -%s +%s @@\n", span(aStart, aN), span(bStart, bN))
		sb.WriteString(body.String())
		i = stop
	}
	return sb.String()
}

func span(start, n int) string {
	if n == 0 {
		return fmt.Sprintf("%d,0", start)
	}
	return fmt.Sprintf("%d,%d", start+1, n)
}

type lineOp struct {
	kind   byte // ' ', '-' or '+'
	line   string
	ai, bi int // the line's index in a and b before it
}

// lineOps is a shortest edit script from a to b, by longest common
// subsequence.
func lineOps(a, b []string) []lineOp {
	if len(a)*len(b) > maxCells {
		var ops []lineOp
		for i, l := range a {
			ops = append(ops, lineOp{'-', l, i, 0})
		}
		for j, l := range b {
			ops = append(ops, lineOp{'+', l, len(a), j})
		}
		return ops
	}
	// lcs[i][j]: length of the LCS of a[i:] and b[j:].
	lcs := make([][]int32, len(a)+1)
	for i := range lcs {
		lcs[i] = make([]int32, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var ops []lineOp
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case i < len(a) && j < len(b) && a[i] == b[j]:
			ops = append(ops, lineOp{' ', a[i], i, j})
			i++
			j++
		case i < len(a) && (j == len(b) || lcs[i+1][j] >= lcs[i][j+1]):
			ops = append(ops, lineOp{'-', a[i], i, j})
			i++
		default:
			ops = append(ops, lineOp{'+', b[j], i, j})
			j++
		}
	}
	return ops
}
