package chattemplate

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ardanlabs/jinja"
)

// strftimeNow implements the strftime_now(format) global transformers adds:
// datetime.now().strftime(format). now is the clock.
func strftimeNow(now func() time.Time, args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
	if len(args) != 1 || !args[0].IsString() {
		return jinja.Undefined(), fmt.Errorf("strftime_now takes one format string, got %d arguments", len(args))
	}
	s, err := strftime(now(), args[0].AsString())
	if err != nil {
		return jinja.Undefined(), fmt.Errorf("strftime_now(%q): %w", args[0].AsString(), err)
	}
	return jinja.NewString(s), nil
}

// strftime formats t like Python's time.strftime on Linux in the C locale,
// for the directives chat templates use. glibc's "-" flag (no padding, as
// in "%-d") is accepted on numeric directives. An unknown directive is an
// error rather than a guess.
func strftime(t time.Time, format string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(format); i++ {
		c := format[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		i++
		noPad := false
		if i < len(format) && format[i] == '-' {
			noPad = true
			i++
		}
		if i >= len(format) {
			return "", fmt.Errorf("format ends with an incomplete directive")
		}
		num := func(v, width int) {
			s := strconv.Itoa(v)
			if !noPad {
				s = strings.Repeat("0", max(0, width-len(s))) + s
			}
			b.WriteString(s)
		}
		hour12 := t.Hour() % 12
		if hour12 == 0 {
			hour12 = 12
		}
		switch d := format[i]; d {
		case 'a':
			b.WriteString(t.Weekday().String()[:3])
		case 'A':
			b.WriteString(t.Weekday().String())
		case 'b':
			b.WriteString(t.Month().String()[:3])
		case 'B':
			b.WriteString(t.Month().String())
		case 'd':
			num(t.Day(), 2)
		case 'H':
			num(t.Hour(), 2)
		case 'I':
			num(hour12, 2)
		case 'j':
			num(t.YearDay(), 3)
		case 'm':
			num(int(t.Month()), 2)
		case 'M':
			num(t.Minute(), 2)
		case 'S':
			num(t.Second(), 2)
		case 'y':
			num(t.Year()%100, 2)
		case 'Y':
			b.WriteString(strconv.Itoa(t.Year()))
		case 'p':
			if t.Hour() < 12 {
				b.WriteString("AM")
			} else {
				b.WriteString("PM")
			}
		case '%':
			b.WriteByte('%')
		default:
			return "", fmt.Errorf("unsupported directive %%%c", d)
		}
	}
	return b.String(), nil
}
