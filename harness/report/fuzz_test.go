package report

import (
	"encoding/binary"
	"math"
	"testing"
	"time"

	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/longctx/longctx/harness/results"
)

// fuzzRows turns bytes into result rows, 24 bytes a row, reaching the
// values a results file can hold that the fixture does not: zero and huge
// contexts and batches, NaN and infinite timings, negative memory, depths
// and ratios outside [0, 1], unknown statuses.
func fuzzRows(data []byte) []results.Row {
	statuses := []string{results.StatusOK, results.StatusOK, results.StatusOOM, results.StatusError, "weird"}
	tasks := []string{"narrativeqa", "needle", "hotpotqa", "other"}
	var rows []results.Row
	for len(data) >= 24 {
		b := data[:24]
		data = data[24:]
		f := func(i int) float64 { return float64(math.Float32frombits(binary.LittleEndian.Uint32(b[i:]))) }
		r := results.Row{
			CellID:        string('a' + rune(b[0]%3)),
			Model:         "m",
			Backend:       results.BackendCUDA,
			AttnPlugin:    []string{"eager", "flash"}[b[1]%2],
			KVPlugin:      "full",
			Task:          tasks[int(b[2])%len(tasks)],
			ContextTokens: int64(b[3]) << (b[4] % 16),
			BatchSize:     int64(b[5] % 5),
			RepeatIndex:   int64(b[6] % 2),
			BatchIndex:    int64(b[7] % 2),
			Warmup:        b[8]%7 == 0,
			Status:        statuses[int(b[9])%len(statuses)],
		}
		if b[10]%2 == 1 {
			r.KVRatio = ptr(f(12))
		}
		if b[11]%2 == 1 {
			r.Depth = ptr(f(12))
		}
		if b[11]%3 != 0 {
			r.TPOTms, r.TTFTms, r.DecodeTokS = ptr(f(16)), ptr(f(20)), ptr(f(16))
			r.PeakDeviceBytes = ptr(int64(binary.LittleEndian.Uint32(b[20:])) - 1<<31)
		}
		if b[10]%3 != 0 {
			r.Scores = map[string]float64{"f1": f(20), "string_match_all": f(16)}
		}
		rows = append(rows, r)
	}
	return rows
}

// FuzzFigures checks that no results, however odd, make the figures panic
// while they are built or drawn. The figures are drawn without the recover
// of saveFigure, so that a panic fails the test instead of becoming an
// error.
func FuzzFigures(f *testing.F) {
	seed := make([]byte, 24*4)
	for i := range seed {
		seed[i] = byte(i * 37)
	}
	f.Add(seed)
	f.Add([]byte{})
	nan := make([]byte, 48)
	for i := 12; i < 24; i += 4 {
		binary.LittleEndian.PutUint32(nan[i:], math.Float32bits(float32(math.NaN())))
		binary.LittleEndian.PutUint32(nan[24+i:], math.Float32bits(float32(math.Inf(1))))
	}
	nan[3], nan[27] = 1, 1
	f.Add(nan)
	f.Fuzz(func(t *testing.T, data []byte) {
		rows := fuzzRows(data)
		if len(rows) > 40 {
			rows = rows[:40]
		}
		figs, err := buildFigures(rows, Options{Width: 8 * vg.Centimeter, Height: 6 * vg.Centimeter})
		if err != nil {
			return
		}
		for _, fig := range figs {
			if fig.Skip != "" {
				continue
			}
			start := time.Now()
			c := vgimg.New(fig.w, fig.h)
			fig.draw(draw.New(c))
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("drawing %s took %v for %+v", fig.Name, d, rows)
			}
		}
	})
}
