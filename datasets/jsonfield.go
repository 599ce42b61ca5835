package datasets

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
)

// decodeJSON unmarshals one record and turns encoding/json's errors into
// messages that name the field and say what was expected.
func decodeJSON(data []byte, v any) error {
	err := json.Unmarshal(data, v)
	if err == nil {
		return nil
	}
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Errorf("invalid JSON at byte %d of the record: %v", syn.Offset, syn)
	case errors.As(err, &typ):
		if typ.Field == "" {
			return fmt.Errorf("record is a JSON %s, want an object", typ.Value)
		}
		// For an array element, Field names the array and Type the
		// element's type, so say where the value belongs, not what the
		// field is.
		return fmt.Errorf("field %q: found a JSON %s where %s belongs", typ.Field, typ.Value, jsonTypeName(typ.Type))
	default:
		return fmt.Errorf("invalid record: %w", err)
	}
}

func jsonTypeName(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		elem := t.Elem()
		for elem.Kind() == reflect.Pointer {
			elem = elem.Elem()
		}
		if elem.Kind() == reflect.String {
			return "an array of strings"
		}
		return "an array"
	case reflect.Int, reflect.Int64, reflect.Int32, reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "true or false"
	}
	return "an object"
}

// requireString returns *s, or an error naming field when it is missing,
// null or (unless allowEmpty) empty.
func requireString(field string, s *string, allowEmpty bool) (string, error) {
	if s == nil {
		return "", fmt.Errorf("field %q is missing or null", field)
	}
	if !allowEmpty && *s == "" {
		return "", fmt.Errorf("field %q is empty", field)
	}
	return *s, nil
}

// requireAnswers checks a list of reference answers: present, not empty,
// no empty strings (an empty reference would score every prediction).
func requireAnswers(field string, answers []*string, present bool) ([]string, error) {
	if !present {
		return nil, fmt.Errorf("field %q is missing or null", field)
	}
	if len(answers) == 0 {
		return nil, fmt.Errorf("field %q has no answers", field)
	}
	out := make([]string, len(answers))
	for i, a := range answers {
		if a == nil || *a == "" {
			return nil, fmt.Errorf("field %q: answer %d is empty or null", field, i)
		}
		out[i] = *a
	}
	return out, nil
}
