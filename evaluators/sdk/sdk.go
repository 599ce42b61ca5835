// Package sdk is the Go side of the evaluator contract for module authors.
// An evaluator is a main package built with GOOS=wasip1 GOARCH=wasm whose
// main calls Main with its descriptor and a scoring function:
//
//	func main() {
//		sdk.Main(contract.Descriptor{
//			Contract: contract.Version, Name: "length", Version: "1.0.0",
//			Scores: []contract.ScoreSpec{{Name: "words", HigherIsBetter: false}},
//		}, func(it contract.Item, scores []float64) error {
//			scores[0] = float64(len(strings.Fields(it.Prediction)))
//			return nil
//		})
//	}
//
// Main prints the descriptor for argv[1] == "describe"; otherwise it reads
// JSONL items from stdin and writes one score line per item to stdout.
package sdk

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/longctx/longctx/evaluators/contract"
)

// ScoreFunc scores one item into scores, which holds one zeroed slot per
// score the descriptor declares, in declaration order. (A slice rather than
// a map: inside WASM a map per item costs more than most metrics.)
type ScoreFunc func(it contract.Item, scores []float64) error

// Main runs the evaluator on the process's arguments and standard streams and
// exits: 0 on success, 1 with a message on stderr otherwise.
func Main(d contract.Descriptor, score ScoreFunc) {
	if err := Run(os.Args, os.Stdin, os.Stdout, d, score); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", d.Name, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// Run is Main without the process: args are argv (args[0] the program name),
// items come from in and results go to out. Tests call it directly.
func Run(args []string, in io.Reader, out io.Writer, d contract.Descriptor, score ScoreFunc) error {
	if err := d.Validate(); err != nil {
		return err
	}
	if len(args) > 1 && args[1] == contract.DescribeArg {
		data, err := json.Marshal(d)
		if err != nil {
			return err
		}
		data = append(data, '\n')
		_, err = out.Write(data)
		return err
	}
	if len(args) > 1 {
		return fmt.Errorf("unexpected argument %q (only %q is defined)", args[1], contract.DescribeArg)
	}
	return scoreStream(in, out, d, score)
}

// scoreStream reads items one line at a time and writes each result as it
// goes; output is buffered, so the host sees few large writes. It uses the
// contract package's reflection-free codec: encoding/json would cost more
// than the metrics inside a WASM module.
func scoreStream(in io.Reader, out io.Writer, d contract.Descriptor, score ScoreFunc) error {
	br := bufio.NewReaderSize(in, 64<<10)
	bw := bufio.NewWriterSize(out, 64<<10)
	names := d.ScoreNames()
	scores := make([]float64, len(names))
	var enc contract.ScoreLineEncoder
	var buf []byte
	for lineNo := 1; ; lineNo++ {
		line, err := br.ReadSlice('\n')
		for errors.Is(err, bufio.ErrBufferFull) {
			// A line longer than the buffer: collect it whole.
			long := append([]byte(nil), line...)
			line, err = br.ReadSlice('\n')
			line = append(long, line...)
		}
		if err != nil && err != io.EOF {
			return fmt.Errorf("stdin line %d: %w", lineNo, err)
		}
		if trimmed := bytes.TrimSpace(line); len(trimmed) > 0 {
			it, derr := contract.DecodeItem(trimmed)
			if derr != nil {
				return fmt.Errorf("stdin line %d: %w", lineNo, derr)
			}
			clear(scores)
			if serr := score(it, scores); serr != nil {
				return fmt.Errorf("item %q: %w", it.ID, serr)
			}
			var serr error
			buf, serr = enc.Append(buf[:0], it.ID, names, scores)
			if serr != nil {
				return fmt.Errorf("item %q: %w", it.ID, serr)
			}
			if _, werr := bw.Write(buf); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			return bw.Flush()
		}
	}
}
