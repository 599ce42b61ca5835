package expr

import (
	"fmt"
	"go/ast"
	"go/token"
	"math"
)

type builtin func(c *compiler, at *ast.CallExpr, args []node) (node, error)

// funcs are the functions expressions may call besides the presets.
var funcs map[string]builtin

func init() {
	funcs = map[string]builtin{
		"abs":         numeric1("abs", func(x int64) int64 { return max(x, -x) }, math.Abs),
		"min":         minMax("min", false),
		"max":         minMax("max", true),
		"exp":         float1("exp", math.Exp),
		"log":         float1("log", math.Log),
		"sqrt":        float1("sqrt", math.Sqrt),
		"tanh":        float1("tanh", math.Tanh),
		"float":       convFloat,
		"int":         convInt,
		"where":       where,
		"alibi_slope": alibiSlopeFn,
	}
}

func errorAt(pos token.Position, format string, args ...any) error {
	return fmt.Errorf("%s: %s", pos, fmt.Sprintf(format, args...))
}

func arity(c *compiler, at *ast.CallExpr, name string, want int, args []node) error {
	if len(args) != want {
		return c.errorf(at, "%s takes %d argument(s), got %d", name, want, len(args))
	}
	for i, a := range args {
		if a.t == Bool {
			return c.errorf(at, "%s argument %d is bool, want a number", name, i+1)
		}
	}
	return nil
}

func numeric1(name string, fi func(int64) int64, ff func(float64) float64) builtin {
	return func(c *compiler, at *ast.CallExpr, args []node) (node, error) {
		if err := arity(c, at, name, 1, args); err != nil {
			return node{}, err
		}
		if args[0].t == Int {
			a := args[0].i
			return intNode(func(e *env) int64 { return fi(a(e)) }), nil
		}
		a := args[0].f
		return floatNode(func(e *env) float64 { return ff(a(e)) }), nil
	}
}

func float1(name string, f func(float64) float64) builtin {
	return func(c *compiler, at *ast.CallExpr, args []node) (node, error) {
		if err := arity(c, at, name, 1, args); err != nil {
			return node{}, err
		}
		a := args[0].asFloat()
		return floatNode(func(e *env) float64 { return f(a(e)) }), nil
	}
}

func minMax(name string, isMax bool) builtin {
	return func(c *compiler, at *ast.CallExpr, args []node) (node, error) {
		if len(args) < 2 {
			return node{}, c.errorf(at, "%s takes at least 2 arguments, got %d", name, len(args))
		}
		allInt := true
		for i, a := range args {
			if a.t == Bool {
				return node{}, c.errorf(at, "%s argument %d is bool, want a number", name, i+1)
			}
			allInt = allInt && a.t == Int
		}
		if allInt {
			fs := make([]intFn, len(args))
			for i, a := range args {
				fs[i] = a.i
			}
			return intNode(func(e *env) int64 {
				r := fs[0](e)
				for _, f := range fs[1:] {
					if v := f(e); (v > r) == isMax && v != r {
						r = v
					}
				}
				return r
			}), nil
		}
		fs := make([]floatFn, len(args))
		for i, a := range args {
			fs[i] = a.asFloat()
		}
		return floatNode(func(e *env) float64 {
			r := fs[0](e)
			for _, f := range fs[1:] {
				if isMax {
					r = math.Max(r, f(e))
				} else {
					r = math.Min(r, f(e))
				}
			}
			return r
		}), nil
	}
}

func convFloat(c *compiler, at *ast.CallExpr, args []node) (node, error) {
	if err := arity(c, at, "float", 1, args); err != nil {
		return node{}, err
	}
	return floatNode(args[0].asFloat()), nil
}

// maxExactInt is the range int() accepts: larger floats would convert
// implementation-dependently.
const maxExactInt = 1 << 53

func convInt(c *compiler, at *ast.CallExpr, args []node) (node, error) {
	if err := arity(c, at, "int", 1, args); err != nil {
		return node{}, err
	}
	if args[0].t == Int {
		return args[0], nil
	}
	f := args[0].f
	pos := c.fset.Position(at.Pos())
	return intNode(func(e *env) int64 {
		v := f(e)
		if math.IsNaN(v) || math.Abs(v) > maxExactInt {
			if e.err == nil {
				e.err = errorAt(pos, "int(%v) out of range", v)
			}
			return 0
		}
		return int64(v) // truncates toward zero, as Go's conversion does
	}), nil
}

func where(c *compiler, at *ast.CallExpr, args []node) (node, error) {
	if len(args) != 3 {
		return node{}, c.errorf(at, "where takes 3 arguments (cond, then, else), got %d", len(args))
	}
	cond, a, b := args[0], args[1], args[2]
	if cond.t != Bool {
		return node{}, c.errorf(at, "where's condition is %s, want bool", cond.t)
	}
	cf := cond.b
	switch {
	case a.t == Bool && b.t == Bool:
		x, y := a.b, b.b
		return boolNode(func(e *env) bool {
			if cf(e) {
				return x(e)
			}
			return y(e)
		}), nil
	case a.t == Bool || b.t == Bool:
		return node{}, c.errorf(at, "where's branches are %s and %s", a.t, b.t)
	case a.t == Int && b.t == Int:
		x, y := a.i, b.i
		return intNode(func(e *env) int64 {
			if cf(e) {
				return x(e)
			}
			return y(e)
		}), nil
	}
	x, y := a.asFloat(), b.asFloat()
	return floatNode(func(e *env) float64 {
		if cf(e) {
			return x(e)
		}
		return y(e)
	}), nil
}

func alibiSlopeFn(c *compiler, at *ast.CallExpr, args []node) (node, error) {
	if err := arity(c, at, "alibi_slope", 1, args); err != nil {
		return node{}, err
	}
	if args[0].t != Int {
		return node{}, c.errorf(at, "alibi_slope takes a head index, got %s", args[0].t)
	}
	h := args[0].i
	return floatNode(func(e *env) float64 { return alibiSlope(h(e), e.NumHeads) }), nil
}
