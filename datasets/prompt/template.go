package prompt

import (
	"fmt"
	"os"
	"strings"
	"unicode/utf8"
)

// Template is a per-task prompt template: an optional system message and a
// user message with exactly one {context} and one {question} placeholder.
//
// The file format is plain UTF-8 text. Without section headers the whole
// file is the user message. With them, a line that is exactly "[system]" or
// "[user]" starts that section. In the text, {context} and {question} are
// replaced ({input} is accepted for {question}, as in LongBench's prompt
// files); "{{" and "}}" stand for literal braces. Leading and trailing
// blank lines of a section are dropped so editors' final newlines do not
// leak into prompts.
type Template struct {
	// Name says where the template came from (a file path or "default
	// narrativeqa"), for error messages and run records.
	Name   string
	System string
	user   []segment
	source string
}

type segmentKind int

const (
	literal segmentKind = iota
	contextSlot
	questionSlot
)

type segment struct {
	kind segmentKind
	text string
}

const (
	systemHeader = "[system]"
	userHeader   = "[user]"
)

// LoadTemplate reads and parses a template file.
func LoadTemplate(path string) (*Template, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("prompt template: %w", err)
	}
	return ParseTemplate(path, string(data))
}

// MustParseTemplate parses a template known to be valid (a built-in one)
// and panics otherwise; use ParseTemplate for anything from outside.
func MustParseTemplate(name, text string) *Template {
	t, err := ParseTemplate(name, text)
	if err != nil {
		panic(err)
	}
	return t
}

// ParseTemplate parses template text; name is used in error messages.
func ParseTemplate(name, text string) (*Template, error) {
	if !utf8.ValidString(text) {
		return nil, fmt.Errorf("prompt template %s: not valid UTF-8", name)
	}
	text = strings.TrimPrefix(text, "\ufeff")
	text = strings.ReplaceAll(text, "\r\n", "\n")
	lines := strings.Split(text, "\n")

	type section struct {
		lines     []string
		firstLine int // 1-based line of the section's first text line
	}
	var sys, usr *section
	var cur *section
	headers := false
	for i, line := range lines {
		switch strings.TrimSpace(line) {
		case systemHeader, userHeader:
			header := strings.TrimSpace(line)
			if !headers && cur != nil {
				if strings.TrimSpace(strings.Join(cur.lines, "")) != "" {
					return nil, fmt.Errorf("prompt template %s:%d: text before the first section header %s", name, cur.firstLine, header)
				}
				usr = nil // blank lines before the first header are no section
			}
			headers = true
			target := &sys
			if header == userHeader {
				target = &usr
			}
			if *target != nil {
				return nil, fmt.Errorf("prompt template %s:%d: second %s section", name, i+1, header)
			}
			*target = &section{firstLine: i + 2}
			cur = *target
			continue
		}
		if cur == nil {
			usr = &section{firstLine: i + 1}
			cur = usr
		}
		cur.lines = append(cur.lines, line)
	}
	if usr == nil {
		return nil, fmt.Errorf("prompt template %s: no [user] section", name)
	}

	t := &Template{Name: name, source: text}
	if sys != nil {
		body, first := trimBlankLines(sys.lines, sys.firstLine)
		segs, err := parseSegments(name, body, first)
		if err != nil {
			return nil, err
		}
		for _, s := range segs {
			if s.kind != literal {
				return nil, fmt.Errorf("prompt template %s: the [system] section cannot hold {context} or {question}", name)
			}
			t.System += s.text
		}
	}
	body, first := trimBlankLines(usr.lines, usr.firstLine)
	segs, err := parseSegments(name, body, first)
	if err != nil {
		return nil, err
	}
	var nctx, nq int
	for _, s := range segs {
		switch s.kind {
		case contextSlot:
			nctx++
		case questionSlot:
			nq++
		}
	}
	if nctx != 1 || nq != 1 {
		return nil, fmt.Errorf("prompt template %s: the user message needs {context} and {question} exactly once each (has %d and %d)", name, nctx, nq)
	}
	t.user = segs
	return t, nil
}

// trimBlankLines drops leading and trailing blank lines and returns the rest
// joined, with the 1-based line number its first line had in the file.
func trimBlankLines(lines []string, firstLine int) (string, int) {
	start, end := 0, len(lines)
	for start < end && strings.TrimSpace(lines[start]) == "" {
		start++
	}
	for end > start && strings.TrimSpace(lines[end-1]) == "" {
		end--
	}
	return strings.Join(lines[start:end], "\n"), firstLine + start
}

// parseSegments splits text into literals and placeholders; line is the
// file line text starts on, for error messages.
func parseSegments(name, text string, line int) ([]segment, error) {
	var segs []segment
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			segs = append(segs, segment{kind: literal, text: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(text); i++ {
		c := text[i]
		switch {
		case c == '\n':
			line++
			lit.WriteByte(c)
		case c == '{' && i+1 < len(text) && text[i+1] == '{':
			lit.WriteByte('{')
			i++
		case c == '}' && i+1 < len(text) && text[i+1] == '}':
			lit.WriteByte('}')
			i++
		case c == '}':
			return nil, fmt.Errorf("prompt template %s:%d: lone '}' (write }} for a literal brace)", name, line)
		case c == '{':
			end := strings.IndexAny(text[i+1:], "{}\n")
			if end < 0 || text[i+1+end] != '}' {
				return nil, fmt.Errorf("prompt template %s:%d: unclosed '{' (write {{ for a literal brace)", name, line)
			}
			key := text[i+1 : i+1+end]
			var kind segmentKind
			switch key {
			case "context":
				kind = contextSlot
			case "question", "input":
				kind = questionSlot
			default:
				return nil, fmt.Errorf("prompt template %s:%d: unknown placeholder {%s} (known: {context}, {question}; write {{ for a literal brace)", name, line, key)
			}
			flush()
			segs = append(segs, segment{kind: kind})
			i += end + 1
		default:
			lit.WriteByte(c)
		}
	}
	flush()
	return segs, nil
}

// Render fills the user message with context and question.
func (t *Template) Render(context, question string) (system, user string) {
	var b strings.Builder
	for _, s := range t.user {
		switch s.kind {
		case literal:
			b.WriteString(s.text)
		case contextSlot:
			b.WriteString(context)
		case questionSlot:
			b.WriteString(question)
		}
	}
	return t.System, b.String()
}

// Source returns the template text as it was parsed, so a run can record
// exactly which template produced its prompts.
func (t *Template) Source() string { return t.source }
