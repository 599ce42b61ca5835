package tokenizer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
)

// jsonObject is one JSON object of tokenizer.json with its path in the file
// (such as "pre_tokenizer.pretokenizers[0]"), so that every error can name
// the field at fault.
type jsonObject struct {
	path   string
	fields map[string]json.RawMessage
}

func isNull(raw json.RawMessage) bool {
	return len(bytes.TrimSpace(raw)) == 0 || string(bytes.TrimSpace(raw)) == "null"
}

func parseObject(path string, raw json.RawMessage) (*jsonObject, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil || fields == nil {
		return nil, fmt.Errorf("%s: expected a JSON object", displayPath(path))
	}
	return &jsonObject{path: path, fields: fields}, nil
}

func displayPath(path string) string {
	if path == "" {
		return "tokenizer.json"
	}
	return path
}

// at returns the path of a field of o.
func (o *jsonObject) at(key string) string {
	if o.path == "" {
		return key
	}
	return o.path + "." + key
}

// get returns a field's raw value, or nil when it is absent or null.
func (o *jsonObject) get(key string) json.RawMessage {
	raw, ok := o.fields[key]
	if !ok || isNull(raw) {
		return nil
	}
	return raw
}

// decode unmarshals a present, non-null field into dst and reports whether
// it was there.
func (o *jsonObject) decode(key string, dst any, want string) (bool, error) {
	raw := o.get(key)
	if raw == nil {
		return false, nil
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return true, fmt.Errorf("%s: expected %s", o.at(key), want)
	}
	return true, nil
}

func (o *jsonObject) optString(key string) (string, bool, error) {
	var s string
	ok, err := o.decode(key, &s, "a string")
	return s, ok, err
}

func (o *jsonObject) reqString(key string) (string, error) {
	s, ok, err := o.optString(key)
	if err == nil && !ok {
		err = fmt.Errorf("%s: missing", o.at(key))
	}
	return s, err
}

func (o *jsonObject) boolOr(key string, def bool) (bool, error) {
	b := def
	_, err := o.decode(key, &b, "true or false")
	return b, err
}

func (o *jsonObject) intOr(key string, def int) (int, error) {
	var v int64
	ok, err := o.decode(key, &v, "an integer")
	if err != nil || !ok {
		return def, err
	}
	if v < math.MinInt32 || v > math.MaxInt32 {
		return def, fmt.Errorf("%s: %d is out of range", o.at(key), v)
	}
	return int(v), nil
}

// optObject returns a nested object, or nil when the field is absent or null.
func (o *jsonObject) optObject(key string) (*jsonObject, error) {
	raw := o.get(key)
	if raw == nil {
		return nil, nil
	}
	return parseObject(o.at(key), raw)
}

func (o *jsonObject) reqObject(key string) (*jsonObject, error) {
	obj, err := o.optObject(key)
	if err == nil && obj == nil {
		err = fmt.Errorf("%s: missing", o.at(key))
	}
	return obj, err
}

// objectList returns the elements of an array of objects.
func (o *jsonObject) objectList(key string) ([]*jsonObject, error) {
	var raws []json.RawMessage
	ok, err := o.decode(key, &raws, "a list")
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%s: missing", o.at(key))
	}
	out := make([]*jsonObject, len(raws))
	for i, raw := range raws {
		if out[i], err = parseObject(fmt.Sprintf("%s[%d]", o.at(key), i), raw); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// typeName returns the "type" field that selects a component's kind.
func (o *jsonObject) typeName() (string, error) {
	return o.reqString("type")
}

func (o *jsonObject) unsupported(typ string) error {
	return fmt.Errorf("%s: unsupported %q", o.at("type"), typ)
}
