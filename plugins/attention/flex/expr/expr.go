// Package expr compiles the mask and score expressions of the flex
// attention plugin: Go expression syntax (parsed by go/parser) over the
// batch index b, query head h, query position q, key position kv and, in
// score expressions, the scaled score, plus named presets:
//
//	mask:  causal, model, sliding_window(W), prefix_lm(P), chunked(C)
//	score: alibi, softcap(c)
//
// The syntax is Go's; the typing is simpler: there are booleans, integers
// (int64, Go's truncating division) and floats (float64), and an integer
// meets a float by becoming one. Integer division or remainder by zero is
// a run-time error, not a panic. An expression compiles once into a tree
// of closures; Eval is safe for concurrent use.
package expr

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Type is the type of an expression.
type Type int

// Types.
const (
	Bool Type = iota + 1
	Int
	Float
)

func (t Type) String() string {
	switch t {
	case Bool:
		return "bool"
	case Int:
		return "int"
	case Float:
		return "float"
	}
	return fmt.Sprintf("Type(%d)", int(t))
}

// Vars are the variables an expression reads.
type Vars struct {
	// B is the batch index (0 for a single sequence), H the query head,
	// Q and KV the absolute positions of the query and the key.
	B, H, Q, KV int64
	// Score is the scaled score q·k·scale (score expressions only).
	Score float64
	// Window is the layer's own sliding window (0: none), which the
	// preset model uses; NumHeads is the number of query heads, for alibi.
	Window, NumHeads int64
}

// MaxLen bounds an expression's source.
const MaxLen = 4096

// Kind says which of the two expressions is compiled.
type Kind int

// Expression kinds.
const (
	// MaskExpr is boolean over b, h, q, kv.
	MaskExpr Kind = iota + 1
	// ScoreExpr is numeric over b, h, q, kv, score.
	ScoreExpr
)

func (k Kind) String() string {
	if k == MaskExpr {
		return "mask"
	}
	return "score"
}

// Program is a compiled expression.
type Program struct {
	kind     Kind
	src      string
	root     node
	usesHead bool
}

// Source returns the expression's text.
func (p *Program) Source() string { return p.src }

// UsesHead reports whether the expression reads h (directly or through
// alibi), so that a block mask must be built per head.
func (p *Program) UsesHead() bool { return p.usesHead }

// env is one evaluation's state: its variables and the first run-time error.
type env struct {
	Vars
	err error
}

type (
	boolFn  func(*env) bool
	intFn   func(*env) int64
	floatFn func(*env) float64
)

// node is a compiled subexpression: exactly the function of its type is set.
type node struct {
	t Type
	b boolFn
	i intFn
	f floatFn
}

// asFloat returns n's value as a float, converting an integer.
func (n node) asFloat() floatFn {
	if n.t == Float {
		return n.f
	}
	i := n.i
	return func(e *env) float64 { return float64(i(e)) }
}

// Compile parses and type-checks src as an expression of the given kind.
func Compile(kind Kind, src string) (*Program, error) {
	if len(src) > MaxLen {
		return nil, fmt.Errorf("%s expression is %d bytes, more than %d", kind, len(src), MaxLen)
	}
	if strings.TrimSpace(src) == "" {
		return nil, fmt.Errorf("%s expression is empty", kind)
	}
	fset := token.NewFileSet()
	tree, err := parser.ParseExprFrom(fset, kind.String(), src, parser.SkipObjectResolution)
	if err != nil {
		return nil, fmt.Errorf("%s expression %q: %w", kind, src, err)
	}
	c := &compiler{kind: kind, fset: fset}
	root, err := c.expr(tree)
	if err != nil {
		return nil, fmt.Errorf("%s expression %q: %w", kind, src, err)
	}
	switch {
	case kind == MaskExpr && root.t != Bool:
		return nil, fmt.Errorf("mask expression %q is %s, want bool", src, root.t)
	case kind == ScoreExpr && root.t == Bool:
		return nil, fmt.Errorf("score expression %q is bool, want a number", src)
	}
	return &Program{kind: kind, src: src, root: root, usesHead: c.usesHead}, nil
}

// EvalBool evaluates a mask expression.
func (p *Program) EvalBool(v Vars) (bool, error) {
	if p.root.t != Bool {
		return false, fmt.Errorf("%s expression is %s, not bool", p.kind, p.root.t)
	}
	e := &env{Vars: v}
	r := p.root.b(e)
	return r, e.err
}

// EvalFloat evaluates a score expression.
func (p *Program) EvalFloat(v Vars) (float64, error) {
	if p.root.t == Bool {
		return 0, fmt.Errorf("%s expression is bool, not a number", p.kind)
	}
	e := &env{Vars: v}
	r := p.root.asFloat()(e)
	return r, e.err
}

type compiler struct {
	kind     Kind
	fset     *token.FileSet
	usesHead bool
}

func (c *compiler) errorf(at ast.Node, format string, args ...any) error {
	return fmt.Errorf("%s: %s", c.fset.Position(at.Pos()), fmt.Sprintf(format, args...))
}

func (c *compiler) expr(x ast.Expr) (node, error) {
	switch x := x.(type) {
	case *ast.ParenExpr:
		return c.expr(x.X)
	case *ast.Ident:
		return c.ident(x)
	case *ast.BasicLit:
		return c.literal(x)
	case *ast.UnaryExpr:
		return c.unary(x)
	case *ast.BinaryExpr:
		return c.binary(x)
	case *ast.CallExpr:
		return c.call(x)
	}
	return node{}, c.errorf(x, "unsupported syntax %s", describe(x))
}

func describe(x ast.Expr) string {
	name := fmt.Sprintf("%T", x)
	name = strings.TrimPrefix(name, "*ast.")
	return strings.TrimSuffix(name, "Expr") + " expression"
}

func intNode(f intFn) node     { return node{t: Int, i: f} }
func floatNode(f floatFn) node { return node{t: Float, f: f} }
func boolNode(f boolFn) node   { return node{t: Bool, b: f} }

func (c *compiler) ident(x *ast.Ident) (node, error) {
	switch x.Name {
	case "b":
		return intNode(func(e *env) int64 { return e.B }), nil
	case "h":
		c.usesHead = true
		return intNode(func(e *env) int64 { return e.H }), nil
	case "q":
		return intNode(func(e *env) int64 { return e.Q }), nil
	case "kv":
		return intNode(func(e *env) int64 { return e.KV }), nil
	case "score":
		if c.kind != ScoreExpr {
			return node{}, c.errorf(x, "score is only defined in score expressions")
		}
		return floatNode(func(e *env) float64 { return e.Score }), nil
	case "true":
		return boolNode(func(*env) bool { return true }), nil
	case "false":
		return boolNode(func(*env) bool { return false }), nil
	}
	if p, ok := presets[x.Name]; ok {
		if p.args != 0 {
			return node{}, c.errorf(x, "%s needs %d argument(s): %s", x.Name, p.args, p.usage)
		}
		return c.preset(x, x.Name, nil)
	}
	if _, ok := funcs[x.Name]; ok {
		return node{}, c.errorf(x, "%s is a function: call it", x.Name)
	}
	return node{}, c.errorf(x, "unknown name %q (variables: b, h, q, kv%s; presets: %s)", x.Name, c.scoreVar(), strings.Join(presetNames(c.kind), ", "))
}

func (c *compiler) scoreVar() string {
	if c.kind == ScoreExpr {
		return ", score"
	}
	return ""
}

func (c *compiler) literal(x *ast.BasicLit) (node, error) {
	switch x.Kind {
	case token.INT:
		v, err := strconv.ParseInt(x.Value, 0, 64)
		if err != nil {
			return node{}, c.errorf(x, "integer %s out of range", x.Value)
		}
		return intNode(func(*env) int64 { return v }), nil
	case token.FLOAT:
		v, err := strconv.ParseFloat(x.Value, 64)
		if err != nil || math.IsInf(v, 0) {
			return node{}, c.errorf(x, "number %s out of range", x.Value)
		}
		return floatNode(func(*env) float64 { return v }), nil
	}
	return node{}, c.errorf(x, "unsupported literal %s", x.Value)
}

func (c *compiler) unary(x *ast.UnaryExpr) (node, error) {
	n, err := c.expr(x.X)
	if err != nil {
		return node{}, err
	}
	switch x.Op {
	case token.NOT:
		if n.t != Bool {
			return node{}, c.errorf(x, "! needs a bool, got %s", n.t)
		}
		f := n.b
		return boolNode(func(e *env) bool { return !f(e) }), nil
	case token.SUB:
		switch n.t {
		case Int:
			f := n.i
			return intNode(func(e *env) int64 { return -f(e) }), nil
		case Float:
			f := n.f
			return floatNode(func(e *env) float64 { return -f(e) }), nil
		}
	case token.ADD:
		if n.t != Bool {
			return n, nil
		}
	}
	return node{}, c.errorf(x, "unsupported operator %s on %s", x.Op, n.t)
}

func (c *compiler) binary(x *ast.BinaryExpr) (node, error) {
	l, err := c.expr(x.X)
	if err != nil {
		return node{}, err
	}
	r, err := c.expr(x.Y)
	if err != nil {
		return node{}, err
	}
	switch x.Op {
	case token.LAND, token.LOR:
		if l.t != Bool || r.t != Bool {
			return node{}, c.errorf(x, "%s needs bools, got %s and %s", x.Op, l.t, r.t)
		}
		a, b := l.b, r.b
		if x.Op == token.LAND {
			return boolNode(func(e *env) bool { return a(e) && b(e) }), nil
		}
		return boolNode(func(e *env) bool { return a(e) || b(e) }), nil
	case token.EQL, token.NEQ, token.LSS, token.LEQ, token.GTR, token.GEQ:
		return c.compare(x, l, r)
	case token.ADD, token.SUB, token.MUL, token.QUO, token.REM, token.AND, token.OR, token.XOR, token.SHL, token.SHR:
		return c.arith(x, l, r)
	}
	return node{}, c.errorf(x, "unsupported operator %s", x.Op)
}

func (c *compiler) compare(x *ast.BinaryExpr, l, r node) (node, error) {
	if l.t == Bool || r.t == Bool {
		if l.t != r.t || (x.Op != token.EQL && x.Op != token.NEQ) {
			return node{}, c.errorf(x, "cannot compare %s %s %s", l.t, x.Op, r.t)
		}
		a, b := l.b, r.b
		if x.Op == token.EQL {
			return boolNode(func(e *env) bool { return a(e) == b(e) }), nil
		}
		return boolNode(func(e *env) bool { return a(e) != b(e) }), nil
	}
	if l.t == Int && r.t == Int {
		a, b := l.i, r.i
		cmp := intCompare[x.Op]
		return boolNode(func(e *env) bool { return cmp(a(e), b(e)) }), nil
	}
	a, b := l.asFloat(), r.asFloat()
	cmp := floatCompare[x.Op]
	return boolNode(func(e *env) bool { return cmp(a(e), b(e)) }), nil
}

var intCompare = map[token.Token]func(a, b int64) bool{
	token.EQL: func(a, b int64) bool { return a == b },
	token.NEQ: func(a, b int64) bool { return a != b },
	token.LSS: func(a, b int64) bool { return a < b },
	token.LEQ: func(a, b int64) bool { return a <= b },
	token.GTR: func(a, b int64) bool { return a > b },
	token.GEQ: func(a, b int64) bool { return a >= b },
}

var floatCompare = map[token.Token]func(a, b float64) bool{
	token.EQL: func(a, b float64) bool { return a == b },
	token.NEQ: func(a, b float64) bool { return a != b },
	token.LSS: func(a, b float64) bool { return a < b },
	token.LEQ: func(a, b float64) bool { return a <= b },
	token.GTR: func(a, b float64) bool { return a > b },
	token.GEQ: func(a, b float64) bool { return a >= b },
}

var errDivZero = errors.New("integer division by zero")

func (c *compiler) arith(x *ast.BinaryExpr, l, r node) (node, error) {
	if l.t == Bool || r.t == Bool {
		return node{}, c.errorf(x, "operator %s needs numbers, got %s and %s", x.Op, l.t, r.t)
	}
	pos := c.fset.Position(x.OpPos)
	if l.t == Int && r.t == Int {
		a, b := l.i, r.i
		var f intFn
		switch x.Op {
		case token.ADD:
			f = func(e *env) int64 { return a(e) + b(e) }
		case token.SUB:
			f = func(e *env) int64 { return a(e) - b(e) }
		case token.MUL:
			f = func(e *env) int64 { return a(e) * b(e) }
		case token.QUO, token.REM:
			quo := x.Op == token.QUO
			f = func(e *env) int64 {
				n, d := a(e), b(e)
				if d == 0 {
					if e.err == nil {
						e.err = fmt.Errorf("%s: %w (at b=%d h=%d q=%d kv=%d)", pos, errDivZero, e.B, e.H, e.Q, e.KV)
					}
					return 0
				}
				if d == -1 { // MinInt64 / -1 overflows; Go would panic
					if quo {
						return -n
					}
					return 0
				}
				if quo {
					return n / d
				}
				return n % d
			}
		case token.AND:
			f = func(e *env) int64 { return a(e) & b(e) }
		case token.OR:
			f = func(e *env) int64 { return a(e) | b(e) }
		case token.XOR:
			f = func(e *env) int64 { return a(e) ^ b(e) }
		case token.SHL, token.SHR:
			left := x.Op == token.SHL
			f = func(e *env) int64 {
				n, s := a(e), b(e)
				if s < 0 || s > 63 {
					if e.err == nil {
						e.err = fmt.Errorf("%s: shift count %d out of range [0,63]", pos, s)
					}
					return 0
				}
				if left {
					return n << s
				}
				return n >> s
			}
		}
		return intNode(f), nil
	}
	a, b := l.asFloat(), r.asFloat()
	switch x.Op {
	case token.ADD:
		return floatNode(func(e *env) float64 { return a(e) + b(e) }), nil
	case token.SUB:
		return floatNode(func(e *env) float64 { return a(e) - b(e) }), nil
	case token.MUL:
		return floatNode(func(e *env) float64 { return a(e) * b(e) }), nil
	case token.QUO:
		return floatNode(func(e *env) float64 { return a(e) / b(e) }), nil
	}
	return node{}, c.errorf(x, "operator %s needs integers, got %s and %s", x.Op, l.t, r.t)
}

func (c *compiler) call(x *ast.CallExpr) (node, error) {
	id, ok := x.Fun.(*ast.Ident)
	if !ok {
		return node{}, c.errorf(x, "only named functions can be called")
	}
	if x.Ellipsis.IsValid() {
		return node{}, c.errorf(x, "... is not supported")
	}
	args := make([]node, len(x.Args))
	for i, a := range x.Args {
		n, err := c.expr(a)
		if err != nil {
			return node{}, err
		}
		args[i] = n
	}
	if p, ok := presets[id.Name]; ok {
		if len(args) != p.args {
			return node{}, c.errorf(x, "%s takes %d argument(s): %s", id.Name, p.args, p.usage)
		}
		return c.preset(x, id.Name, args)
	}
	if f, ok := funcs[id.Name]; ok {
		return f(c, x, args)
	}
	return node{}, c.errorf(x, "unknown function %q (functions: %s; presets: %s)", id.Name, strings.Join(funcNames(), ", "), strings.Join(presetNames(c.kind), ", "))
}

// presetNames lists the presets usable in expressions of a kind.
func presetNames(k Kind) []string {
	var names []string
	for _, n := range sortedNames(presets) {
		if presets[n].kind == k {
			names = append(names, n)
		}
	}
	return names
}

func funcNames() []string { return sortedNames(funcs) }

func sortedNames[V any](m map[string]V) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
