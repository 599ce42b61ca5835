// Package needle generates needle-in-a-haystack prompts in the style of
// RULER and the original needle test: for a grid of prompt lengths and
// needle depths, sentences of the form "The secret number for the amber
// falcon is 4821337." are hidden in a haystack of filler text, and the model
// is asked for the value.
//
// Lengths and depths are measured in tokens of the target model. A cell of
// length L yields a prompt of at most L tokens (after the task and chat
// templates, counted as the engine encodes it) that a further haystack
// sentence would overflow. The target needle sits at the sentence boundary
// nearest to the requested depth, where depth is the fraction of the
// context's tokens, not counting the target needle itself, that come before
// it. Both are checked by encoding the assembled text, not assumed from
// per-sentence counts. The same seed gives the same prompts.
package needle

import (
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/longctx/longctx/datasets/prompt"
)

// Task is the task name of needle prompts.
const Task = "needle"

// Variant is a needle test variant.
type Variant string

// The variants.
const (
	// Single hides one needle.
	Single Variant = "single"
	// MultiKey hides needles with different keys; the question asks for
	// one key's value and the others are distractors.
	MultiKey Variant = "multikey"
	// MultiValue hides several values for one key; the question asks for
	// all of them.
	MultiValue Variant = "multivalue"
)

// Variants returns the variants.
func Variants() []Variant { return []Variant{Single, MultiKey, MultiValue} }

// ParseVariant checks a user-given variant name.
func ParseVariant(s string) (Variant, error) {
	for _, v := range Variants() {
		if string(v) == s {
			return v, nil
		}
	}
	return "", fmt.Errorf("unknown needle variant %q (known: single, multikey, multivalue)", s)
}

// DefaultNeedles is the number of needles of the multi-needle variants.
const DefaultNeedles = 4

// DefaultMaxNewTokens returns the generation budget for a variant: a
// seven-digit number is up to 7 tokens and multivalue asks for several.
func DefaultMaxNewTokens(v Variant) int {
	if v == MultiValue {
		return 64
	}
	return 32
}

// DefaultTemplateText is the built-in needle prompt template.
const DefaultTemplateText = `A few secret numbers are hidden in the text below. Read it carefully; afterwards you will be asked for one of them.

{context}

{question}`

// DefaultTemplate returns the built-in needle prompt template.
func DefaultTemplate() *prompt.Template {
	return prompt.MustParseTemplate("default needle", DefaultTemplateText)
}

// Config is a needle grid.
type Config struct {
	// Lengths are the prompt lengths in tokens.
	Lengths []int
	// Depths are needle depths in [0, 1]; LinearDepths makes an even grid.
	Depths  []float64
	Variant Variant
	// Needles is the number of needles for MultiKey (target plus
	// distractors) and MultiValue (values); 0 means DefaultNeedles. Single
	// takes 0 or 1.
	Needles int
	// PerCell is the number of prompts per (length, depth) cell, each with
	// its own keys, values and distractor positions; 0 means 1.
	PerCell int
	Seed    uint64
	// Haystack is the filler text; nil uses NewFiller(Seed).
	Haystack Haystack
	// Template overrides DefaultTemplate.
	Template *prompt.Template
	// MaxNewTokens overrides DefaultMaxNewTokens.
	MaxNewTokens int
}

// LinearDepths returns n depths evenly spaced from 0 to 1 inclusive (n=1
// gives the middle).
func LinearDepths(n int) ([]float64, error) {
	if n < 1 {
		return nil, fmt.Errorf("needle depths: need at least one, got %d", n)
	}
	if n == 1 {
		return []float64{0.5}, nil
	}
	out := make([]float64, n)
	for i := range out {
		out[i] = float64(i) / float64(n-1)
	}
	return out, nil
}

// ParseDepths reads a depth list: "linear:N" for LinearDepths(N), or
// comma-separated fractions in [0, 1] ("0,0.25,0.5") or percentages
// ("0%,50%,100%").
func ParseDepths(s string) ([]float64, error) {
	s = strings.TrimSpace(s)
	if rest, ok := strings.CutPrefix(s, "linear:"); ok {
		n, err := strconv.Atoi(strings.TrimSpace(rest))
		if err != nil {
			return nil, fmt.Errorf("needle depths %q: want linear:N with a whole number N", s)
		}
		if n > 1000 {
			return nil, fmt.Errorf("needle depths %q: at most 1000 depths", s)
		}
		return LinearDepths(n)
	}
	var out []float64
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		pct := strings.HasSuffix(part, "%")
		d, err := strconv.ParseFloat(strings.TrimSuffix(part, "%"), 64)
		if err != nil {
			return nil, fmt.Errorf("needle depths %q: %q is not a number", s, part)
		}
		if pct {
			d /= 100
		}
		if !(d >= 0 && d <= 1) {
			return nil, fmt.Errorf("needle depths %q: %q is outside [0, 1] (or 0%%-100%%)", s, part)
		}
		out = append(out, d)
	}
	return out, nil
}

// ParseLengths reads comma-separated prompt lengths in tokens; a "k"
// suffix multiplies by 1024 ("512,4k,32k").
func ParseLengths(s string) ([]int, error) {
	var out []int
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		mult := 1
		if num, ok := strings.CutSuffix(strings.ToLower(part), "k"); ok {
			part, mult = num, 1024
		}
		n, err := strconv.Atoi(part)
		if err != nil || n <= 0 || n > math.MaxInt32/mult {
			return nil, fmt.Errorf("needle lengths %q: %q is not a positive token count", s, part)
		}
		out = append(out, n*mult)
	}
	return out, nil
}

func (c *Config) check() error {
	if len(c.Lengths) == 0 {
		return fmt.Errorf("needle: no lengths")
	}
	for _, l := range c.Lengths {
		if l <= 0 {
			return fmt.Errorf("needle: length %d is not positive", l)
		}
	}
	if len(c.Depths) == 0 {
		return fmt.Errorf("needle: no depths")
	}
	for _, d := range c.Depths {
		if !(d >= 0 && d <= 1) {
			return fmt.Errorf("needle: depth %v is outside [0, 1]", d)
		}
	}
	switch c.Variant {
	case Single:
		if c.Needles > 1 {
			return fmt.Errorf("needle: the single variant has one needle, not %d", c.Needles)
		}
	case MultiKey, MultiValue:
		if c.Needles == 1 || c.Needles < 0 || c.Needles > len(keyAdjectives)*len(keyNouns)/4 {
			return fmt.Errorf("needle: %s needs 2 to %d needles, got %d", c.Variant, len(keyAdjectives)*len(keyNouns)/4, c.Needles)
		}
	default:
		_, err := ParseVariant(string(c.Variant))
		return err
	}
	if c.PerCell < 0 {
		return fmt.Errorf("needle: negative prompts per cell %d", c.PerCell)
	}
	return nil
}

// Generate renders the grid, length-major, then depth, then PerCell.
func Generate(b *prompt.Builder, cfg Config) ([]prompt.Prompt, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if b == nil {
		return nil, fmt.Errorf("needle: nil prompt builder")
	}
	g := &generator{b: b, cfg: cfg, hay: cfg.Haystack, tmpl: cfg.Template}
	if g.hay == nil {
		g.hay = NewFiller(cfg.Seed)
	}
	if g.tmpl == nil {
		g.tmpl = DefaultTemplate()
	}
	g.needles = cfg.Needles
	if cfg.Variant == Single {
		g.needles = 1
	} else if g.needles == 0 {
		g.needles = DefaultNeedles
	}
	g.maxNew = cfg.MaxNewTokens
	if g.maxNew == 0 {
		g.maxNew = DefaultMaxNewTokens(cfg.Variant)
	}
	g.prefix = []int{0}
	perCell := max(cfg.PerCell, 1)

	var out []prompt.Prompt
	for _, l := range cfg.Lengths {
		if budget := b.Budget(); budget > 0 && l > budget {
			return nil, fmt.Errorf("needle: length %d exceeds the prompt budget of %d", l, budget)
		}
		for _, d := range cfg.Depths {
			for k := range perCell {
				p, err := g.cell(l, d, k)
				if err != nil {
					return nil, err
				}
				out = append(out, p)
			}
		}
	}
	return out, nil
}

type generator struct {
	b       *prompt.Builder
	cfg     Config
	hay     Haystack
	tmpl    *prompt.Template
	needles int
	maxNew  int
	// cost[i] is the token count of haystack sentence i encoded alone;
	// prefix[i] the sum of cost[:i]. Token counts of joined sentences are
	// close to additive, so these place needles and size haystacks; the
	// results are then measured on the real text.
	cost   []int
	prefix []int
}

// needleSpec is one hidden statement.
type needleSpec struct {
	key, value, sentence string
	tokens               int
}

// maxDraws bounds how often a cell redraws keys and values that collide
// with a user haystack's text.
const maxDraws = 20

func (g *generator) cell(length int, depth float64, k int) (prompt.Prompt, error) {
	id := fmt.Sprintf("%s-%d-d%s-%d", g.cfg.Variant, length, strconv.FormatFloat(depth, 'g', -1, 64), k)
	// Each cell has its own random stream, keyed by its coordinates, so
	// that adding a length or depth to a grid leaves the other cells as
	// they were.
	h := fnv.New64a()
	h.Write([]byte(id))
	rng := rand.New(rand.NewPCG(g.cfg.Seed, h.Sum64()))
	for range maxDraws {
		needles, question, err := g.draw(rng)
		if err != nil {
			return prompt.Prompt{}, err
		}
		// Distractors land at random fractions of the haystack; the
		// fractions are drawn once so the sizing rounds move nothing else.
		frac := make([]float64, len(needles))
		for j := 1; j < len(needles); j++ {
			frac[j] = rng.Float64()
		}
		lay, err := g.fit(id, length, depth, needles, frac, question)
		if errors.Is(err, errCollision) {
			continue
		}
		if err != nil {
			return prompt.Prompt{}, err
		}
		p := prompt.Prompt{
			Task:          Task,
			SampleID:      id,
			Variant:       string(g.cfg.Variant),
			Text:          lay.text,
			Context:       lay.context,
			Question:      question,
			ContextTokens: lay.contextTokens,
			PromptTokens:  lay.promptTokens,
			TargetTokens:  length,
			Depth:         depth,
			MaxNewTokens:  g.maxNew,
		}
		switch g.cfg.Variant {
		case MultiValue:
			for _, n := range needles {
				p.References = append(p.References, n.value)
			}
		case MultiKey:
			p.References = []string{needles[0].value}
			for _, n := range needles[1:] {
				p.Distractors = append(p.Distractors, n.value)
			}
		default:
			p.References = []string{needles[0].value}
		}
		return p, nil
	}
	return prompt.Prompt{}, fmt.Errorf("needle %s: every key or value drawn also occurs in the haystack %s", id, g.hay.Name())
}

// draw picks keys and values: distinct keys (one shared key for
// MultiValue), distinct seven-digit values.
func (g *generator) draw(rng *rand.Rand) ([]needleSpec, string, error) {
	n := g.needles
	keys := make([]string, n)
	seenKey := map[string]bool{}
	for j := range keys {
		if j > 0 && g.cfg.Variant == MultiValue {
			keys[j] = keys[0]
			continue
		}
		for {
			k := keyAdjectives[rng.IntN(len(keyAdjectives))] + " " + keyNouns[rng.IntN(len(keyNouns))]
			if !seenKey[k] {
				seenKey[k] = true
				keys[j] = k
				break
			}
		}
	}
	seenValue := map[string]bool{}
	needles := make([]needleSpec, n)
	for j := range needles {
		var v string
		for {
			v = strconv.Itoa(1_000_000 + rng.IntN(9_000_000))
			if !seenValue[v] {
				seenValue[v] = true
				break
			}
		}
		form := "The secret number for the %s is %s."
		if g.cfg.Variant == MultiValue {
			form = "One of the secret numbers for the %s is %s."
		}
		s := fmt.Sprintf(form, keys[j], v)
		t, err := g.b.CountText(s)
		if err != nil {
			return nil, "", fmt.Errorf("needle: %w", err)
		}
		needles[j] = needleSpec{key: keys[j], value: v, sentence: s, tokens: t}
	}
	q := fmt.Sprintf("What is the secret number for the %s? Reply with the number only.", keys[0])
	if g.cfg.Variant == MultiValue {
		q = fmt.Sprintf("The text gives several secret numbers for the %s. What are all of them? Reply with the numbers only, separated by commas.", keys[0])
	}
	return needles, q, nil
}

// grow extends the sentence costs to cover m sentences.
func (g *generator) grow(m int) error {
	for len(g.cost) < m {
		i := len(g.cost)
		t, err := g.b.CountText(g.hay.Sentence(i))
		if err != nil {
			return fmt.Errorf("needle: haystack sentence %d: %w", i, err)
		}
		// An empty sentence would stall the sizing; count it as one.
		t = max(t, 1)
		g.cost = append(g.cost, t)
		g.prefix = append(g.prefix, g.prefix[i]+t)
	}
	return nil
}

// sentencesWithin returns the most sentences from the start whose costs
// sum to at most budget.
func (g *generator) sentencesWithin(budget int) (int, error) {
	m := 0
	for {
		if err := g.grow(m + 1); err != nil {
			return 0, err
		}
		if g.prefix[m+1] > budget {
			return m, nil
		}
		m++
	}
}

// layout is an assembled, measured prompt.
type layout struct {
	m                           int // haystack sentences
	context, text               string
	contextTokens, promptTokens int
}

// maxSizingRounds bounds the search for the haystack size; each round
// measures a candidate, and the first is usually right.
const maxSizingRounds = 16

// fit finds the largest haystack whose prompt fits length.
func (g *generator) fit(id string, length int, depth float64, needles []needleSpec, frac []float64, question string) (*layout, error) {
	var bare []string
	for _, n := range needles {
		bare = append(bare, n.sentence)
	}
	text, err := g.b.Render(g.tmpl, strings.Join(bare, " "), question)
	if err != nil {
		return nil, fmt.Errorf("needle %s: %w", id, err)
	}
	overhead, err := g.b.CountPrompt(text)
	if err != nil {
		return nil, fmt.Errorf("needle %s: %w", id, err)
	}
	m := 0
	if overhead < length {
		if m, err = g.sentencesWithin(length - overhead); err != nil {
			return nil, err
		}
	}
	if overhead >= length || m+1 < len(needles)-1 {
		return nil, fmt.Errorf("needle %s: length %d is too short: the template, question and %d needle(s) alone take %d tokens",
			id, length, len(needles), overhead)
	}

	var best *layout
	lo, hi := -1, math.MaxInt // largest m known to fit, smallest known not to
	for range maxSizingRounds {
		lay, err := g.assemble(m, depth, needles, frac, question)
		if err != nil {
			return nil, fmt.Errorf("needle %s: %w", id, err)
		}
		if lay.promptTokens > length {
			hi = m
			over := lay.promptTokens - length
			next := m - 1
			for next > lo+1 && g.prefix[m]-g.prefix[next] < over {
				next--
			}
			if next <= lo || next+1 < len(needles)-1 {
				break
			}
			m = next
			continue
		}
		lo, best = m, lay
		if err := g.grow(m + 1); err != nil {
			return nil, err
		}
		room := length - lay.promptTokens
		if g.cost[m] > room || m+1 >= hi {
			break // the next sentence would not fit
		}
		next := m + 1
		for next+1 < hi {
			if err := g.grow(next + 1); err != nil {
				return nil, err
			}
			if g.prefix[next+1]-g.prefix[m] > room {
				break
			}
			next++
		}
		m = next
	}
	if best == nil {
		return nil, fmt.Errorf("needle %s: found no haystack size whose prompt fits in %d tokens", id, length)
	}
	return best, nil
}

// maxDepthRounds bounds the measured correction of the target's position.
const maxDepthRounds = 4

// assemble hides the needles in the first m haystack sentences, places the
// target at the sentence boundary nearest to depth (measured), and renders.
func (g *generator) assemble(m int, depth float64, needles []needleSpec, frac []float64, question string) (*layout, error) {
	if err := g.grow(m); err != nil {
		return nil, err
	}
	// The context without the target is a run of units: haystack sentences
	// with the distractors between them, each at its own boundary.
	used := map[int]bool{}
	at := map[int]int{}
	for j := 1; j < len(needles); j++ {
		b := nearestFree(int(math.Round(frac[j]*float64(m))), m, used)
		used[b] = true
		at[b] = j
	}
	var units []string
	prefix := []int{0} // prefix[u] estimates the tokens of units[:u]
	add := func(s string, tokens int) {
		units = append(units, s)
		prefix = append(prefix, prefix[len(prefix)-1]+tokens)
	}
	for b := 0; b <= m; b++ {
		if j, ok := at[b]; ok {
			add(needles[j].sentence, needles[j].tokens)
		}
		if b < m {
			add(g.hay.Sentence(b), g.cost[b])
		}
	}
	// The target goes into one of the gaps 0..len(units).
	nearest := func(offset, want float64) int {
		best, bestErr := 0, math.Inf(1)
		for u, t := range prefix {
			if e := math.Abs(offset + float64(t) - want); e < bestErr {
				best, bestErr = u, e
			}
		}
		return best
	}
	gap := nearest(0, depth*float64(prefix[len(units)]))

	var ctx string
	var ctxTokens int
	for round := 0; ; round++ {
		before := strings.Join(units[:gap], " ")
		parts := append(append(append([]string{}, units[:gap]...), needles[0].sentence), units[gap:]...)
		ctx = strings.Join(parts, " ")
		// Measure where the target really is: the tokens before it, and the
		// context's tokens without it.
		p, err := g.b.CountText(before)
		if err != nil {
			return nil, err
		}
		if ctxTokens, err = g.b.CountText(ctx); err != nil {
			return nil, err
		}
		want := depth * float64(ctxTokens-needles[0].tokens)
		// Estimate the measured prefix at other gaps from the local
		// differences of the per-sentence counts.
		next := nearest(float64(p-prefix[gap]), want)
		if next == gap || round+1 == maxDepthRounds {
			break
		}
		gap = next
	}
	for _, n := range needles {
		wantKey := 1
		if g.cfg.Variant == MultiValue {
			wantKey = len(needles)
		}
		if strings.Count(ctx, n.value) != 1 || strings.Count(ctx, n.key) != wantKey {
			return nil, errCollision
		}
	}
	text, err := g.b.Render(g.tmpl, ctx, question)
	if err != nil {
		return nil, err
	}
	n, err := g.b.CountPrompt(text)
	if err != nil {
		return nil, err
	}
	return &layout{m: m, context: ctx, text: text, contextTokens: ctxTokens, promptTokens: n}, nil
}

var errCollision = errors.New("needle key or value occurs in the haystack")

// nearestFree returns the free boundary in [0, m] closest to b.
func nearestFree(b, m int, used map[int]bool) int {
	b = min(max(b, 0), m)
	for d := 0; d <= m; d++ {
		if b-d >= 0 && !used[b-d] {
			return b - d
		}
		if b+d <= m && !used[b+d] {
			return b + d
		}
	}
	return b // unreachable: callers keep m+1 >= distractors
}

// Needle keys: adjective and noun lists that the filler never uses, so a
// key occurs in the synthetic haystack only where it was hidden.
var (
	keyAdjectives = []string{"amber", "cobalt", "crimson", "golden", "ivory", "jade", "scarlet", "silver", "violet",
		"indigo", "emerald", "onyx", "coral", "ochre", "saffron", "teal", "azure", "pearl", "ruby", "tawny"}
	keyNouns = []string{"falcon", "lantern", "compass", "anchor", "violin", "kettle", "dragon", "tulip", "comet",
		"harp", "otter", "beacon", "sparrow", "pebble", "thimble", "glacier", "cactus", "marble", "walrus", "zeppelin"}
)
