package metrics

import (
	"bytes"
	"strings"
)

// NeedleScores are the RULER / needle-in-a-haystack string-match scores for
// one prediction.
type NeedleScores struct {
	// All is RULER's string_match_all: the fraction of needle values found.
	All float64
	// Part is RULER's string_match_part: 1 when any needle value is found.
	Part float64
}

// Needle checks which needle values (the references) occur in the
// prediction as case-insensitive substrings, lowercasing both sides as
// Python's str.lower does. An empty needle value always matches, as "" in s
// is true in Python.
func (s *Scorer) Needle(prediction string, needles []string) (NeedleScores, error) {
	if len(needles) == 0 {
		return NeedleScores{}, ErrNoReferences
	}
	found := 0
	if isASCII(prediction) {
		s.lowerA = appendASCIILower(s.lowerA[:0], prediction)
		for _, n := range needles {
			if isASCII(n) {
				s.lowerB = appendASCIILower(s.lowerB[:0], n)
				if bytes.Contains(s.lowerA, s.lowerB) {
					found++
				}
			} else if strings.Contains(string(s.lowerA), pyLower(n)) {
				found++
			}
		}
	} else {
		pred := pyLower(prediction)
		for _, n := range needles {
			if strings.Contains(pred, pyLower(n)) {
				found++
			}
		}
	}
	r := NeedleScores{All: float64(found) / float64(len(needles))}
	if found > 0 {
		r.Part = 1
	}
	return r, nil
}

// Needle is Scorer.Needle with a fresh Scorer.
func Needle(prediction string, needles []string) (NeedleScores, error) {
	return NewScorer().Needle(prediction, needles)
}

func appendASCIILower(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}
