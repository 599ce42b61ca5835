package sdk

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/longctx/longctx/plugins/sdk/pluginpb"
)

// OptionType is the type of an option's value.
type OptionType int

// Option types. Every value is typed by the user as text
// (--attn-opt key=value) and parsed against the schema.
const (
	String OptionType = iota + 1
	Int
	Float
	Bool
	// Enum is a string restricted to Option.Choices.
	Enum
	// IntList is a comma-separated list of integers; "" is the empty list.
	IntList
)

// String names the type as `harness plugins describe` shows it.
func (t OptionType) String() string {
	switch t {
	case String:
		return "string"
	case Int:
		return "int"
	case Float:
		return "float"
	case Bool:
		return "bool"
	case Enum:
		return "enum"
	case IntList:
		return "int list"
	}
	return fmt.Sprintf("OptionType(%d)", int(t))
}

// Option is one entry of a plugin's option schema.
type Option struct {
	// Name is lowercase letters, digits and underscores, starting with a letter.
	Name string
	Type OptionType
	// Default is the value used when the user gives none, in the form the
	// user would type it.
	Default string
	Help    string
	// Choices are the allowed values of an Enum.
	Choices []string
	// Min and Max, when set, bound Int and Float values and IntList
	// elements, inclusively.
	Min, Max *float64
}

// Bound returns a pointer to v, for Option.Min and Option.Max.
func Bound(v float64) *float64 { return &v }

// CheckSchema checks that names are well formed and unique, types known,
// enums have choices and every default is a valid value.
func CheckSchema(schema []Option) error {
	seen := map[string]bool{}
	for i, o := range schema {
		if !validName(o.Name) {
			return fmt.Errorf("option %d: name %q: want lowercase letters, digits and underscores, starting with a letter", i, o.Name)
		}
		if seen[o.Name] {
			return fmt.Errorf("option %q declared twice", o.Name)
		}
		seen[o.Name] = true
		if o.Type < String || o.Type > IntList {
			return fmt.Errorf("option %q: unknown type %d", o.Name, int(o.Type))
		}
		if (o.Type == Enum) != (len(o.Choices) > 0) {
			return fmt.Errorf("option %q: choices belong to enum options and enums need them", o.Name)
		}
		if (o.Min != nil && !isFinite(*o.Min)) || (o.Max != nil && !isFinite(*o.Max)) {
			return fmt.Errorf("option %q: bounds must be finite", o.Name)
		}
		if _, err := parseValue(o, o.Default); err != nil {
			return fmt.Errorf("option %q: default: %w", o.Name, err)
		}
	}
	return nil
}

func validName(s string) bool {
	if s == "" || len(s) > 64 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for _, c := range []byte(s) {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' {
			return false
		}
	}
	return true
}

func isFinite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// Options are option values resolved against a schema: the user's values
// parsed and checked, defaults filled in.
type Options struct {
	schema map[string]Option
	values map[string]any
	set    map[string]bool
}

// ResolveOptions validates the user's values (name → text) against schema
// and fills in defaults. Errors name the option and say what was expected.
func ResolveOptions(schema []Option, given map[string]string) (Options, error) {
	o := Options{schema: map[string]Option{}, values: map[string]any{}, set: map[string]bool{}}
	for _, spec := range schema {
		o.schema[spec.Name] = spec
	}
	for _, name := range sortedKeys(given) {
		spec, ok := o.schema[name]
		if !ok {
			return Options{}, fmt.Errorf("unknown option %q (%s)", name, knownOptions(schema))
		}
		v, err := parseValue(spec, given[name])
		if err != nil {
			return Options{}, fmt.Errorf("option %s=%s: %w", name, given[name], err)
		}
		o.values[name], o.set[name] = v, true
	}
	for _, spec := range schema {
		if _, ok := o.values[spec.Name]; ok {
			continue
		}
		v, err := parseValue(spec, spec.Default)
		if err != nil {
			return Options{}, fmt.Errorf("option %q: default: %w", spec.Name, err)
		}
		o.values[spec.Name] = v
	}
	return o, nil
}

func knownOptions(schema []Option) string {
	if len(schema) == 0 {
		return "this plugin takes no options"
	}
	names := make([]string, len(schema))
	for i, s := range schema {
		names[i] = s.Name
	}
	return "options: " + strings.Join(names, ", ")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func parseValue(spec Option, s string) (any, error) {
	switch spec.Type {
	case String:
		return s, nil
	case Enum:
		if !slices.Contains(spec.Choices, s) {
			return nil, fmt.Errorf("%q is not one of %s", s, strings.Join(spec.Choices, ", "))
		}
		return s, nil
	case Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not a boolean (true or false)", s)
		}
		return b, nil
	case Int:
		n, err := parseInt(s)
		if err != nil {
			return nil, err
		}
		return n, checkBounds(spec, float64(n))
	case Float:
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil || !isFinite(f) {
			return nil, fmt.Errorf("%q is not a finite number", s)
		}
		return f, checkBounds(spec, f)
	case IntList:
		if strings.TrimSpace(s) == "" {
			return []int{}, nil
		}
		parts := strings.Split(s, ",")
		list := make([]int, len(parts))
		for i, p := range parts {
			n, err := parseInt(p)
			if err != nil {
				return nil, fmt.Errorf("element %d: %w", i, err)
			}
			if err := checkBounds(spec, float64(n)); err != nil {
				return nil, fmt.Errorf("element %d: %w", i, err)
			}
			list[i] = n
		}
		return list, nil
	}
	return nil, fmt.Errorf("unknown option type %d", int(spec.Type))
}

func parseInt(s string) (int, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 0)
	if err != nil {
		return 0, fmt.Errorf("%q is not an integer", s)
	}
	return int(n), nil
}

func checkBounds(spec Option, v float64) error {
	if spec.Min != nil && v < *spec.Min {
		return fmt.Errorf("%v is below the minimum %v", v, *spec.Min)
	}
	if spec.Max != nil && v > *spec.Max {
		return fmt.Errorf("%v is above the maximum %v", v, *spec.Max)
	}
	return nil
}

// value returns an option's value, panicking when the plugin asks for an
// option its own schema lacks or with the wrong type: that is a bug in the
// plugin, never bad user input, and Serve turns the panic into an error.
func (o Options) value(name string, t OptionType) any {
	spec, ok := o.schema[name]
	if !ok {
		panic(fmt.Sprintf("sdk: option %q is not in the plugin's schema", name))
	}
	if spec.Type != t && !(t == String && spec.Type == Enum) {
		panic(fmt.Sprintf("sdk: option %q is %s, read as %s", name, spec.Type, t))
	}
	return o.values[name]
}

// String returns a String or Enum option.
func (o Options) String(name string) string { return o.value(name, String).(string) }

// Int returns an Int option.
func (o Options) Int(name string) int { return o.value(name, Int).(int) }

// Float returns a Float option.
func (o Options) Float(name string) float64 { return o.value(name, Float).(float64) }

// Bool returns a Bool option.
func (o Options) Bool(name string) bool { return o.value(name, Bool).(bool) }

// IntList returns an IntList option (a copy).
func (o Options) IntList(name string) []int { return slices.Clone(o.value(name, IntList).([]int)) }

// IsSet reports whether the user gave the option (rather than its default).
func (o Options) IsSet(name string) bool { return o.set[name] }

// Text returns every option's value in canonical text form (defaults
// included), for the run's record.
func (o Options) Text() map[string]string {
	out := make(map[string]string, len(o.values))
	for name, v := range o.values {
		out[name] = formatValue(v)
	}
	return out
}

// Given returns the options the user set, in canonical text form.
func (o Options) Given() map[string]string {
	out := map[string]string{}
	for name := range o.set {
		out[name] = formatValue(o.values[name])
	}
	return out
}

func formatValue(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case bool:
		return strconv.FormatBool(v)
	case int:
		return strconv.Itoa(v)
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64)
	case []int:
		s := make([]string, len(v))
		for i, n := range v {
			s[i] = strconv.Itoa(n)
		}
		return strings.Join(s, ",")
	}
	return fmt.Sprint(v)
}

// ParseAssignments parses command-line key=value pairs (--attn-opt,
// --kv-opt) into a map. A value may contain '=' and commas; a key may not
// repeat.
func ParseAssignments(args []string) (map[string]string, error) {
	out := make(map[string]string, len(args))
	for _, a := range args {
		key, value, ok := strings.Cut(a, "=")
		key = strings.TrimSpace(key)
		if !ok || key == "" {
			return nil, fmt.Errorf("option %q: want key=value", a)
		}
		if _, dup := out[key]; dup {
			return nil, fmt.Errorf("option %q given twice", key)
		}
		out[key] = value
	}
	return out, nil
}

func optionToPB(o Option) *pluginpb.OptionSpec {
	return &pluginpb.OptionSpec{
		Name: o.Name, Type: pluginpb.OptionType(o.Type), Default: o.Default, Help: o.Help,
		Choices: slices.Clone(o.Choices), Min: o.Min, Max: o.Max,
	}
}

func optionFromPB(p *pluginpb.OptionSpec) Option {
	o := Option{
		Name: p.GetName(), Type: OptionType(p.GetType()), Default: p.GetDefault(), Help: p.GetHelp(),
		Choices: slices.Clone(p.GetChoices()),
	}
	if p.Min != nil {
		o.Min = Bound(p.GetMin())
	}
	if p.Max != nil {
		o.Max = Bound(p.GetMax())
	}
	return o
}
