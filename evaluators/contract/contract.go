// Package contract defines what passes between the evaluator host and an
// evaluator module: the items a module reads on stdin, the score lines it
// writes on stdout and the descriptor it prints when asked to describe
// itself. Both sides (host and the Go SDK) use these types, so the wire format
// lives in one place; evaluators/README.md documents it for other languages.
package contract

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
)

// Version is the contract version a descriptor declares. A host refuses
// modules of a version it does not know, so the format can change later
// without old modules being misread.
const Version = 1

// DescribeArg is argv[1] when the host asks a module for its descriptor
// instead of scoring (argv[0] is the evaluator's name).
const DescribeArg = "describe"

// Item is one prediction to score: one JSON object per stdin line.
type Item struct {
	ID         string          `json:"id"`
	Prediction string          `json:"prediction"`
	References []string        `json:"references"`
	Meta       json.RawMessage `json:"meta,omitempty"`
}

// ScoreLine is what a module writes to stdout for each item, in input order:
// the item's id echoed and one finite number per declared score name.
type ScoreLine struct {
	ID     string             `json:"id"`
	Scores map[string]float64 `json:"scores"`
}

// ScoreSpec declares one score a module produces.
type ScoreSpec struct {
	Name           string `json:"name"`
	HigherIsBetter bool   `json:"higher_is_better"`
	Description    string `json:"description,omitempty"`
}

// Descriptor is what a module prints (one JSON object) for argv[1] ==
// "describe".
type Descriptor struct {
	Contract    int         `json:"contract"`
	Name        string      `json:"name"`
	Version     string      `json:"version"`
	Description string      `json:"description,omitempty"`
	Scores      []ScoreSpec `json:"scores"`
}

// ValidName reports whether s may name an evaluator or a score:
// [A-Za-z0-9][A-Za-z0-9_.-]{0,63}, so names work as file names, Parquet
// column suffixes and CLI arguments.
func ValidName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9')
		if !alnum && (i == 0 || (c != '_' && c != '.' && c != '-')) {
			return false
		}
	}
	return true
}

// ParseDescriptor decodes and checks a descriptor.
func ParseDescriptor(data []byte) (Descriptor, error) {
	var d Descriptor
	if err := strictUnmarshal(data, &d); err != nil {
		return Descriptor{}, fmt.Errorf("descriptor: %w", err)
	}
	if err := d.Validate(); err != nil {
		return Descriptor{}, err
	}
	return d, nil
}

// Validate checks that a descriptor is complete and consistent.
func (d Descriptor) Validate() error {
	if d.Contract != Version {
		return fmt.Errorf("descriptor: contract version %d, this host speaks %d", d.Contract, Version)
	}
	if !ValidName(d.Name) {
		return fmt.Errorf("descriptor: name %q is not [A-Za-z0-9][A-Za-z0-9_.-]{0,63}", d.Name)
	}
	if d.Version == "" || len(d.Version) > 64 {
		return fmt.Errorf("descriptor %s: version must be 1-64 characters, got %q", d.Name, d.Version)
	}
	if len(d.Scores) == 0 {
		return fmt.Errorf("descriptor %s: declares no scores", d.Name)
	}
	if len(d.Scores) > MaxScores {
		return fmt.Errorf("descriptor %s: declares %d scores, at most %d allowed", d.Name, len(d.Scores), MaxScores)
	}
	seen := make(map[string]bool, len(d.Scores))
	for i, s := range d.Scores {
		if !ValidName(s.Name) {
			return fmt.Errorf("descriptor %s: score %d name %q is not [A-Za-z0-9][A-Za-z0-9_.-]{0,63}", d.Name, i, s.Name)
		}
		if seen[s.Name] {
			return fmt.Errorf("descriptor %s: score %q declared twice", d.Name, s.Name)
		}
		seen[s.Name] = true
	}
	return nil
}

// ScoreNames lists the declared score names in declaration order.
func (d Descriptor) ScoreNames() []string {
	names := make([]string, len(d.Scores))
	for i, s := range d.Scores {
		names[i] = s.Name
	}
	return names
}

// MaxScores bounds how many scores one evaluator may declare.
const MaxScores = 64

// ParseScoreLine decodes one stdout line and checks it against the item it
// answers and the scores the descriptor declares.
func ParseScoreLine(line []byte, wantID string, d Descriptor) (ScoreLine, error) {
	sl, err := decodeScoreLine(line)
	if err != nil {
		return ScoreLine{}, fmt.Errorf("not a valid score line: %w", err)
	}
	if sl.ID != wantID {
		return ScoreLine{}, fmt.Errorf("id %q does not echo the input id %q", sl.ID, wantID)
	}
	if sl.Scores == nil {
		return ScoreLine{}, errors.New(`missing "scores" object`)
	}
	for _, spec := range d.Scores {
		v, ok := sl.Scores[spec.Name]
		if !ok {
			return ScoreLine{}, fmt.Errorf("score %q is missing", spec.Name)
		}
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return ScoreLine{}, fmt.Errorf("score %q is not finite", spec.Name)
		}
	}
	if len(sl.Scores) != len(d.Scores) {
		for name := range sl.Scores {
			if !declared(d, name) {
				return ScoreLine{}, fmt.Errorf("score %q is not declared by the descriptor", name)
			}
		}
	}
	return sl, nil
}

func declared(d Descriptor, name string) bool {
	for _, s := range d.Scores {
		if s.Name == name {
			return true
		}
	}
	return false
}

// strictUnmarshal decodes exactly one JSON value into v, rejecting unknown
// fields and trailing data, so a module that drifts from the contract is
// caught rather than half-read.
func strictUnmarshal(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("not a valid JSON object: %w", err)
	}
	if dec.More() {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}
