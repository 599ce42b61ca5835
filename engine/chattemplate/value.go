package chattemplate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"

	"github.com/ardanlabs/jinja"
)

// toValue converts a Go value from Options.Extra into a template value. It
// refuses types it does not know instead of passing them as undefined.
func toValue(v any) (jinja.Value, error) {
	switch x := v.(type) {
	case nil:
		return jinja.None(), nil
	case jinja.Value:
		return x, nil
	case bool:
		return jinja.NewBool(x), nil
	case string:
		return jinja.NewString(x), nil
	case int:
		return jinja.NewInt(int64(x)), nil
	case int8:
		return jinja.NewInt(int64(x)), nil
	case int16:
		return jinja.NewInt(int64(x)), nil
	case int32:
		return jinja.NewInt(int64(x)), nil
	case int64:
		return jinja.NewInt(x), nil
	case uint8:
		return jinja.NewInt(int64(x)), nil
	case uint16:
		return jinja.NewInt(int64(x)), nil
	case uint32:
		return jinja.NewInt(int64(x)), nil
	case uint:
		if uint64(x) > math.MaxInt64 {
			return jinja.Value{}, fmt.Errorf("integer %d does not fit in int64", x)
		}
		return jinja.NewInt(int64(x)), nil
	case uint64:
		if x > math.MaxInt64 {
			return jinja.Value{}, fmt.Errorf("integer %d does not fit in int64", x)
		}
		return jinja.NewInt(int64(x)), nil
	case float32:
		return jinja.NewFloat(float64(x)), nil
	case float64:
		return jinja.NewFloat(x), nil
	case json.Number:
		return numberValue(x)
	case json.RawMessage:
		return decodeJSON(x)
	case []string:
		items := make([]jinja.Value, len(x))
		for i, s := range x {
			items[i] = jinja.NewString(s)
		}
		return jinja.NewList(items), nil
	case []any:
		items := make([]jinja.Value, len(x))
		for i, item := range x {
			val, err := toValue(item)
			if err != nil {
				return jinja.Value{}, fmt.Errorf("[%d]: %w", i, err)
			}
			items[i] = val
		}
		return jinja.NewList(items), nil
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		d := jinja.NewDict()
		for _, k := range keys {
			val, err := toValue(x[k])
			if err != nil {
				return jinja.Value{}, fmt.Errorf("[%q]: %w", k, err)
			}
			d.AsDict().Set(k, val)
		}
		return d, nil
	}
	return jinja.Value{}, fmt.Errorf("unsupported type %T", v)
}

// numberValue keeps Python's distinction between int and float literals.
func numberValue(n json.Number) (jinja.Value, error) {
	if i, err := n.Int64(); err == nil {
		return jinja.NewInt(i), nil
	}
	f, err := n.Float64()
	if err != nil {
		return jinja.Value{}, fmt.Errorf("number %s: %w", n, err)
	}
	return jinja.NewFloat(f), nil
}

// decodeJSON decodes JSON keeping object keys in document order, as Python's
// json.loads does; tojson then writes them back in that order.
func decodeJSON(data []byte) (jinja.Value, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := decodeJSONValue(dec)
	if err != nil {
		return jinja.Value{}, fmt.Errorf("JSON: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return jinja.Value{}, errors.New("JSON: trailing data after the value")
	}
	return v, nil
}

func decodeJSONValue(dec *json.Decoder) (jinja.Value, error) {
	tok, err := dec.Token()
	if err != nil {
		return jinja.Value{}, err
	}
	switch t := tok.(type) {
	case nil:
		return jinja.None(), nil
	case bool:
		return jinja.NewBool(t), nil
	case string:
		return jinja.NewString(t), nil
	case json.Number:
		return numberValue(t)
	case json.Delim:
		if t == '[' {
			var items []jinja.Value
			for dec.More() {
				item, err := decodeJSONValue(dec)
				if err != nil {
					return jinja.Value{}, err
				}
				items = append(items, item)
			}
			_, err := dec.Token() // ']'
			return jinja.NewList(items), err
		}
		d := jinja.NewDict()
		for dec.More() {
			keyTok, err := dec.Token()
			if err != nil {
				return jinja.Value{}, err
			}
			key, _ := keyTok.(string) // the decoder only yields string keys
			val, err := decodeJSONValue(dec)
			if err != nil {
				return jinja.Value{}, err
			}
			d.AsDict().Set(key, val)
		}
		_, err := dec.Token() // '}'
		return d, err
	}
	return jinja.Value{}, fmt.Errorf("unexpected JSON token %v", tok)
}
