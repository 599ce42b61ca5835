package host

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"

	"github.com/longctx/longctx/evaluators/contract"
)

// Evaluator is a compiled, described module ready to score.
type Evaluator struct {
	host       *Host
	ref        string // as given to Load, for messages
	name       string // argv[0]: the file name without .wasm
	path       string // absolute
	sum        [sha256.Size]byte
	descriptor contract.Descriptor
}

// Descriptor is what the module declared when it was loaded.
func (e *Evaluator) Descriptor() contract.Descriptor { return e.descriptor }

// Path is the module file.
func (e *Evaluator) Path() string { return e.path }

func (e *Evaluator) describe(ctx context.Context) error {
	out, err := e.run(ctx, "describe", []string{e.name, contract.DescribeArg}, nil, describeOutputLimit)
	if err != nil {
		return err
	}
	d, perr := contract.ParseDescriptor(bytes.TrimSpace(out))
	if perr != nil {
		return &RunError{Evaluator: e.ref, Phase: "describe", Kind: ErrBadOutput, Detail: fmt.Sprintf("%v (output %s)", perr, snippet(out))}
	}
	e.descriptor = d
	return nil
}

// Score scores items, Options.BatchSize per instantiation (all at once by
// default), and returns one ScoreLine per item in input order. Any failure
// fails the whole call with a *RunError; the Evaluator stays usable.
func (e *Evaluator) Score(ctx context.Context, items []contract.Item) ([]contract.ScoreLine, error) {
	batch := e.host.opts.BatchSize
	if batch <= 0 || batch > len(items) {
		batch = len(items)
	}
	out := make([]contract.ScoreLine, 0, len(items))
	for start := 0; start < len(items); start += batch {
		lines, err := e.scoreBatch(ctx, items[start:min(start+batch, len(items))])
		if err != nil {
			return nil, err
		}
		out = append(out, lines...)
	}
	return out, nil
}

func (e *Evaluator) scoreBatch(ctx context.Context, items []contract.Item) ([]contract.ScoreLine, error) {
	var stdin bytes.Buffer
	if err := contract.WriteItems(&stdin, items); err != nil {
		return nil, fmt.Errorf("evaluator %s: encoding items: %w", e.ref, err)
	}
	limit := e.host.opts.OutputBase + e.host.opts.OutputPerItem*len(items)
	stdout, err := e.run(ctx, "score", []string{e.name}, stdin.Bytes(), limit)
	if err != nil {
		return nil, err
	}
	return e.parseScores(stdout, items)
}

// parseScores checks a module's stdout against the items it was given: one
// valid score line per item, in order, and nothing else.
func (e *Evaluator) parseScores(stdout []byte, items []contract.Item) ([]contract.ScoreLine, error) {
	bad := func(format string, args ...any) error {
		return &RunError{Evaluator: e.ref, Phase: "score", Kind: ErrBadOutput, Detail: fmt.Sprintf(format, args...)}
	}
	lines := make([]contract.ScoreLine, 0, len(items))
	rest := stdout
	for lineNo := 1; len(rest) > 0; lineNo++ {
		line := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line, rest = rest[:i], rest[i+1:]
		} else {
			rest = nil
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(bytes.TrimSpace(line)) == 0 {
			if len(rest) == 0 {
				break // the final newline
			}
			return nil, bad("stdout line %d is blank", lineNo)
		}
		if len(lines) == len(items) {
			return nil, bad("more than %d score lines for %d items (line %d: %s)", len(items), len(items), lineNo, snippet(line))
		}
		sl, err := contract.ParseScoreLine(line, items[len(lines)].ID, e.descriptor)
		if err != nil {
			return nil, bad("stdout line %d: %v: %s", lineNo, err, snippet(line))
		}
		lines = append(lines, sl)
	}
	if len(lines) != len(items) {
		return nil, bad("%d score lines for %d items", len(lines), len(items))
	}
	return lines, nil
}
