package prompt

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseTemplate(t *testing.T) {
	cases := []struct {
		name, text   string
		system, user string // rendered with context "C" and question "Q"
	}{
		{"plain", "Read:\n{context}\nQ: {question}\n", "", "Read:\nC\nQ: Q"},
		{"input alias", "{context} / {input}", "", "C / Q"},
		{"escaped braces", "{{json}} {context} }}{{ {question}", "", "{json} C }{ Q"},
		{"sections", "[system]\nBe brief.\n\n[user]\n\n{context}\n{question}\n\n", "Be brief.", "C\nQ"},
		{"user only header", "\n\n[user]\n{question} {context}", "", "Q C"},
		{"crlf and bom", "\ufeff[system]\r\nS\r\n[user]\r\n{context}\r\n{question}\r\n", "S", "C\nQ"},
		{"header with spaces", "  [user]  \n{context}{question}", "", "CQ"},
		{"bracket text is text", "[note]\n{context}{question}", "", "[note]\nCQ"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tmpl, err := ParseTemplate("t", c.text)
			if err != nil {
				t.Fatalf("ParseTemplate: %v", err)
			}
			sys, user := tmpl.Render("C", "Q")
			if sys != c.system || user != c.user {
				t.Errorf("Render = (%q, %q), want (%q, %q)", sys, user, c.system, c.user)
			}
		})
	}
}

func TestParseTemplateErrors(t *testing.T) {
	cases := []struct {
		name, text string
		want       string // substring of the error
	}{
		{"unknown placeholder", "{context}\n\n{question} {answer}", "t:3: unknown placeholder {answer}"},
		{"unclosed", "{context} {question} {oops", "t:1: unclosed '{'"},
		{"unclosed at newline", "{context}\n{ques\ntion}", "t:2: unclosed '{'"},
		{"lone close", "{context} {question} }", "t:1: lone '}'"},
		{"no context", "{question}", "exactly once each (has 0 and 1)"},
		{"two contexts", "{context}{context}{question}", "exactly once each (has 2 and 1)"},
		{"no question", "{context}", "exactly once each (has 1 and 0)"},
		{"text before header", "hello\n[user]\n{context}{question}", "t:1: text before the first section header [user]"},
		{"second user", "[user]\n{context}{question}\n[user]\nx", "t:3: second [user] section"},
		{"placeholder in system", "[system]\n{context}\n[user]\n{context}{question}", "[system] section cannot hold"},
		{"system only", "[system]\nhi", "no [user] section"},
		{"empty", "", "exactly once each (has 0 and 0)"},
		{"bad utf8", "{context}{question}\xff", "not valid UTF-8"},
		{"line numbers in user section", "[system]\nS\n[user]\n{context}\n{question}\n{bad}", "t:6: unknown placeholder {bad}"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseTemplate("t", c.text)
			if err == nil {
				t.Fatalf("ParseTemplate(%q) succeeded, want error containing %q", c.text, c.want)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not contain %q", err, c.want)
			}
		})
	}
}

func TestLoadTemplate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "qa.txt")
	if err := os.WriteFile(path, []byte("[system]\nSys\n[user]\nDoc: {context}\nQ: {question}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tmpl, err := LoadTemplate(path)
	if err != nil {
		t.Fatal(err)
	}
	if tmpl.Name != path || tmpl.System != "Sys" {
		t.Errorf("Name, System = %q, %q", tmpl.Name, tmpl.System)
	}
	if _, err := LoadTemplate(filepath.Join(dir, "missing.txt")); err == nil || !strings.Contains(err.Error(), "missing.txt") {
		t.Errorf("missing file error = %v, want one naming the file", err)
	}
}

func FuzzParseTemplate(f *testing.F) {
	for _, s := range []string{
		"{context}{question}",
		"[system]\nS\n[user]\n{context}\n{input}",
		"{{ {context} }} {question}",
		"[user]\n[system]\n",
		"{", "}", "{context", "\ufeff\r\n[user]\r\n{context}{question}",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		tmpl, err := ParseTemplate("fuzz", text)
		if err != nil {
			return
		}
		// A parsed template places context and question exactly once each.
		const ctx, q = "\x00CTX\x00", "\x00Q\x00"
		sys, user := tmpl.Render(ctx, q)
		if strings.Count(user, ctx) < 1 || strings.Count(user, q) < 1 {
			t.Fatalf("rendered user message %q lacks the context or question", user)
		}
		if strings.Contains(sys, ctx) || strings.Contains(sys, q) {
			t.Fatalf("system message %q holds a placeholder value", sys)
		}
	})
}
