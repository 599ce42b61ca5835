package chattemplate

import (
	"fmt"
	"strings"
	"unicode"
)

// prepareSource rewrites a chat template so that ardanlabs/jinja renders its
// text exactly as Jinja2 does in the environment transformers builds
// (trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False).
//
// ardanlabs/jinja applies trim_blocks/lstrip_blocks itself, but to the
// nearest *text* segment rather than to the text next to the tag: in
// "{% if x %}{{ y }}\nfoo" it removes the newline after "{{ y }}", and in
// "a\n  {{ y }}{% if x %}" it removes the indentation before "{{ y }}".
// It also keeps the template's trailing newline, ignores the "+" modifiers
// and does not normalise "\r\n". So the whitespace rules are applied here,
// following Jinja2's lexer, and every piece of literal text is handed to
// the engine as a string expression ({{ "..." }}). With no text segments
// left, the engine's own trimming has nothing to act on.
//
// Tags are copied with their whitespace-control signs removed; comments are
// dropped. Newlines removed from the source are re-added inside empty
// comments before the next tag so that the engine's error messages still
// name the line of the original template.
func prepareSource(src string) (string, error) {
	src = normalizeNewlines(src)
	// keep_trailing_newline=False: Jinja2 drops exactly one final newline.
	src = strings.TrimSuffix(src, "\n")

	p := preparer{src: src}
	if err := p.run(); err != nil {
		return "", err
	}
	return p.out.String(), nil
}

// maxNesting bounds how deeply blocks and brackets may nest. The engine
// parses and renders recursively, so an absurdly nested template could
// exhaust the goroutine stack, which is fatal in Go. Jinja2 itself stops
// sooner: Python's recursion limit is reached at about 80 nested
// parentheses or 100 nested blocks.
const maxNesting = 100

type preparer struct {
	src        string
	blockDepth int
	out        strings.Builder
	// lineStarting mirrors the Jinja2 lexer's flag: the previous token
	// ended with a newline, so text that follows starts a line.
	lineStarting bool
	outNewlines  int // newlines written to out so far
	srcNewlines  int // newlines in src[:srcCounted]
	srcCounted   int
}

func (p *preparer) run() error {
	src := p.src
	pos := 0
	p.lineStarting = true
	for pos < len(src) {
		open := findOpener(src, pos)
		if open < 0 {
			p.emitText(src[pos:])
			return nil
		}
		kind := src[open+1] // '{', '%' or '#'
		bodyStart := open + 2
		var openSign byte
		if bodyStart < len(src) && (src[bodyStart] == '-' || src[bodyStart] == '+') {
			openSign = src[bodyStart]
			bodyStart++
		}

		text := applyLeftControl(src[pos:open], openSign, kind != '{', p.lineStarting)
		p.emitText(text)

		if kind == '%' {
			if end, ok := matchRawBegin(src, bodyStart); ok {
				next, err := p.raw(open, end)
				if err != nil {
					return err
				}
				pos = next
				continue
			}
		}

		body, closeSign, end, err := scanTag(src, open, bodyStart, kind)
		if err != nil {
			return err
		}
		pos = applyRightControl(src, end, closeSign, kind != '{')
		p.lineStarting = pos > 0 && src[pos-1] == '\n'

		if kind == '#' {
			continue
		}
		if kind == '%' {
			p.blockDepth += blockDelta(body)
			if p.blockDepth > maxNesting {
				return fmt.Errorf("line %d: blocks nested deeper than %d", lineAt(src, open), maxNesting)
			}
		}
		p.padLines(open)
		if kind == '{' {
			p.write("{{ " + splitBraces(body) + " }}")
		} else {
			p.write("{% " + splitBraces(body) + " %}")
		}
	}
	return nil
}

// raw handles "{% raw %}...{% endraw %}": the content is literal text.
// open is the start of the raw tag and afterBegin the index just past its
// closer (and past the whitespace a "-%}" strips). It returns the index
// after the endraw tag.
func (p *preparer) raw(open, afterBegin int) (int, error) {
	src := p.src
	p.lineStarting = afterBegin > 0 && src[afterBegin-1] == '\n'
	endOpen, sign, closeSign, end, ok := findEndRaw(src, afterBegin)
	if !ok {
		return 0, fmt.Errorf("line %d: raw block is never closed by {%% endraw %%}", lineAt(src, open))
	}
	content := applyLeftControl(src[afterBegin:endOpen], sign, true, p.lineStarting)
	p.emitText(content)
	next := applyRightControl(src, end, closeSign, true)
	p.lineStarting = next > 0 && src[next-1] == '\n'
	return next, nil
}

func (p *preparer) write(s string) {
	p.out.WriteString(s)
	p.outNewlines += strings.Count(s, "\n")
}

// emitText writes literal template text as a string expression. Only the
// backslash and the quote need escaping for the engine's string literals;
// newlines may appear raw inside them.
func (p *preparer) emitText(text string) {
	if text == "" {
		return
	}
	var b strings.Builder
	b.WriteString(`{{ "`)
	for i := 0; i < len(text); i++ {
		switch c := text[i]; c {
		case '\\', '"':
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteString(`" }}`)
	p.write(b.String())
}

// padLines adds the newlines stripped so far (inside an empty comment, which
// renders nothing) so the tag starting at offset open keeps its line number.
func (p *preparer) padLines(open int) {
	p.srcNewlines += strings.Count(p.src[p.srcCounted:open], "\n")
	p.srcCounted = open
	missing := p.srcNewlines - p.outNewlines
	if missing > 0 {
		p.write("{#" + strings.Repeat("\n", missing) + "#}")
	}
}

// normalizeNewlines turns "\r\n" and "\r" into "\n", as Jinja2's lexer does
// before tokenising (newline_sequence is "\n").
func normalizeNewlines(s string) string {
	if !strings.Contains(s, "\r") {
		return s
	}
	s = strings.ReplaceAll(s, "\r\n", "\n")
	return strings.ReplaceAll(s, "\r", "\n")
}

// findOpener returns the index of the next "{{", "{%" or "{#" at or after
// pos, or -1.
func findOpener(src string, pos int) int {
	for i := pos; i+1 < len(src); i++ {
		if src[i] != '{' {
			continue
		}
		switch src[i+1] {
		case '{', '%', '#':
			return i
		}
	}
	return -1
}

// applyLeftControl applies the whitespace control of a tag to the text in
// front of it: "-" strips all trailing whitespace; without a sign, block and
// comment tags strip the spaces that only indent them (lstrip_blocks).
func applyLeftControl(text string, sign byte, isBlock, lineStarting bool) string {
	switch {
	case sign == '-':
		return strings.TrimRightFunc(text, isPySpace)
	case sign == '+' || !isBlock:
		return text
	}
	lineStart := strings.LastIndexByte(text, '\n') + 1
	if lineStart == 0 && !lineStarting {
		return text
	}
	tail := text[lineStart:]
	if tail == "" || strings.TrimLeftFunc(tail, isPySpace) != "" {
		return text
	}
	return text[:lineStart]
}

// applyRightControl returns where the text after a tag starts: "-" skips all
// whitespace; block and comment tags without a sign drop one newline
// (trim_blocks); "+" keeps everything.
func applyRightControl(src string, end int, sign byte, isBlock bool) int {
	switch {
	case sign == '-':
		rest := strings.TrimLeftFunc(src[end:], isPySpace)
		return len(src) - len(rest)
	case sign == '+' || !isBlock:
		return end
	}
	if end < len(src) && src[end] == '\n' {
		return end + 1
	}
	return end
}

// scanTag finds the end of the tag whose body starts at bodyStart. Like
// Jinja2's lexer it ignores closers inside string literals and inside
// unbalanced brackets. It returns the body, the closing sign ('-', '+' or 0)
// and the index just past the closer.
func scanTag(src string, open, bodyStart int, kind byte) (body string, sign byte, end int, err error) {
	closer := "}}"
	switch kind {
	case '%':
		closer = "%}"
	case '#':
		closer = "#}"
	}
	var stack []byte
	for i := bodyStart; i < len(src); {
		c := src[i]
		if kind == '#' || len(stack) == 0 {
			if (c == '-' || (c == '+' && kind != '{')) && strings.HasPrefix(src[i+1:], closer) {
				return src[bodyStart:i], c, i + 1 + len(closer), nil
			}
			if strings.HasPrefix(src[i:], closer) {
				return src[bodyStart:i], 0, i + len(closer), nil
			}
		}
		if kind == '#' {
			i++
			continue
		}
		switch c {
		case '\'', '"':
			j := i + 1
			for j < len(src) && src[j] != c {
				if src[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(src) {
				return "", 0, 0, fmt.Errorf("line %d: unterminated string literal in tag", lineAt(src, i))
			}
			i = j + 1
			continue
		case '(', '[', '{':
			stack = append(stack, c)
			if len(stack) > maxNesting {
				return "", 0, 0, fmt.Errorf("line %d: brackets nested deeper than %d", lineAt(src, i), maxNesting)
			}
		case ')', ']', '}':
			if len(stack) == 0 || stack[len(stack)-1] != openingBracket(c) {
				return "", 0, 0, fmt.Errorf("line %d: unexpected %q in tag", lineAt(src, i), c)
			}
			stack = stack[:len(stack)-1]
		}
		i++
	}
	return "", 0, 0, fmt.Errorf("line %d: tag {%c is never closed", lineAt(src, open), kind)
}

func openingBracket(c byte) byte {
	switch c {
	case ')':
		return '('
	case ']':
		return '['
	}
	return '{'
}

// blockDelta tells how a statement changes the block nesting: +1 for a
// statement that opens a block, -1 for an end tag.
func blockDelta(body string) int {
	fields := strings.FieldsFunc(body, func(r rune) bool { return !isIdentRune(r) })
	if len(fields) == 0 {
		return 0
	}
	switch kw := fields[0]; {
	case strings.HasPrefix(kw, "end"):
		return -1
	case kw == "if", kw == "for", kw == "macro", kw == "call", kw == "filter",
		kw == "block", kw == "with", kw == "autoescape", kw == "generation":
		return 1
	case kw == "set" && !hasAssignment(body):
		return 1 // {% set x %}...{% endset %}
	}
	return 0
}

func isIdentRune(r rune) bool {
	return r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r)
}

// hasAssignment reports whether a statement has an "=" outside string
// literals (comparisons included, which only occur in assignments' values).
func hasAssignment(body string) bool {
	for i := 0; i < len(body); i++ {
		switch c := body[i]; c {
		case '\'', '"':
			j := i + 1
			for j < len(body) && body[j] != c {
				if body[j] == '\\' {
					j++
				}
				j++
			}
			i = j
		case '=':
			return true
		}
	}
	return false
}

// matchRawBegin reports whether the statement body starting at i is "raw"
// (Jinja2: {%(-|+|)\s*raw\s*(-%}\s*|%})) and returns the index after the tag,
// past any whitespace a "-%}" strips. Unlike other blocks, the raw opener
// does not trim a following newline.
func matchRawBegin(src string, i int) (int, bool) {
	i = skipPySpace(src, i)
	if !strings.HasPrefix(src[i:], "raw") {
		return 0, false
	}
	i = skipPySpace(src, i+len("raw"))
	switch {
	case strings.HasPrefix(src[i:], "-%}"):
		return skipPySpace(src, i+3), true
	case strings.HasPrefix(src[i:], "%}"):
		return i + 2, true
	}
	return 0, false
}

// findEndRaw finds the first {%(-|+|)\s*endraw\s*(+%}|-%}|%}) at or after
// pos. It returns the tag's start, its opening and closing signs and the
// index just past its closer.
func findEndRaw(src string, pos int) (open int, sign, closeSign byte, end int, ok bool) {
	for {
		rel := strings.Index(src[pos:], "{%")
		if rel < 0 {
			return 0, 0, 0, 0, false
		}
		open = pos + rel
		i := open + 2
		sign = 0
		if i < len(src) && (src[i] == '-' || src[i] == '+') {
			sign = src[i]
			i++
		}
		i = skipPySpace(src, i)
		if strings.HasPrefix(src[i:], "endraw") {
			i = skipPySpace(src, i+len("endraw"))
			switch {
			case strings.HasPrefix(src[i:], "+%}"), strings.HasPrefix(src[i:], "-%}"):
				return open, sign, src[i], i + 3, true
			case strings.HasPrefix(src[i:], "%}"):
				return open, sign, 0, i + 2, true
			}
		}
		pos = open + 2
	}
}

// splitBraces puts a space between adjacent closing braces outside string
// literals. A Jinja2 expression such as {'a': {'b': 1}} is legal inside a
// tag (the lexer balances brackets), but ardanlabs/jinja would take its
// "}}" for the end of the tag; the space does not change its meaning.
func splitBraces(body string) string {
	if !strings.Contains(body, "}}") {
		return body
	}
	var b strings.Builder
	for i := 0; i < len(body); i++ {
		c := body[i]
		if c == '\'' || c == '"' {
			j := i + 1
			for j < len(body) && body[j] != c {
				if body[j] == '\\' {
					j++
				}
				j++
			}
			j = min(j, len(body)-1)
			b.WriteString(body[i : j+1])
			i = j
			continue
		}
		b.WriteByte(c)
		if c == '}' && i+1 < len(body) && body[i+1] == '}' {
			b.WriteByte(' ')
		}
	}
	return b.String()
}

func skipPySpace(src string, i int) int {
	rest := strings.TrimLeftFunc(src[i:], isPySpace)
	return len(src) - len(rest)
}

// isPySpace matches Python's str.isspace, which Jinja2's "\s" and
// str.rstrip use: Go's unicode.IsSpace plus the separators U+001C..U+001F.
func isPySpace(r rune) bool {
	return unicode.IsSpace(r) || (r >= 0x1c && r <= 0x1f)
}

func lineAt(src string, offset int) int {
	return strings.Count(src[:offset], "\n") + 1
}
