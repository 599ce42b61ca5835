// Package manifest reads and writes the manifest of a plugin folder: the
// small JSON file that names the plugin, its kind and protocol version,
// its executable and that executable's SHA-256, which the harness checks
// before starting it.
package manifest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// FileName is the manifest's name inside a plugin folder.
const FileName = "plugin.json"

// maxSize bounds the manifest read: it is a few hundred bytes.
const maxSize = 64 << 10

// Manifest describes a plugin folder.
type Manifest struct {
	Name string `json:"name"`
	// Kind is "attention" or "kvcache".
	Kind            string `json:"kind"`
	Version         string `json:"version,omitempty"`
	ProtocolVersion int    `json:"protocol_version"`
	// Executable is the plugin program's file name inside the folder.
	Executable string `json:"executable"`
	// SHA256 is the executable's checksum, lowercase hex.
	SHA256 string `json:"sha256"`
}

// Parse decodes and validates a manifest. Unknown fields are errors, so a
// misspelt "sha256" cannot silently disable the checksum.
func Parse(data []byte) (Manifest, error) {
	var m Manifest
	if len(data) > maxSize {
		return m, fmt.Errorf("manifest is %d bytes, more than %d", len(data), maxSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return Manifest{}, fmt.Errorf("manifest: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Manifest{}, errors.New("manifest: data after the JSON object")
	}
	if err := m.Validate(); err != nil {
		return Manifest{}, err
	}
	return m, nil
}

// Validate checks every field.
func (m Manifest) Validate() error {
	switch {
	case !ValidName(m.Name):
		return fmt.Errorf("manifest: name %q: want 1-64 lowercase letters, digits, '_' or '-'", m.Name)
	case m.Kind != "attention" && m.Kind != "kvcache":
		return fmt.Errorf("manifest %s: kind %q: want attention or kvcache", m.Name, m.Kind)
	case m.ProtocolVersion <= 0:
		return fmt.Errorf("manifest %s: protocol_version %d must be positive", m.Name, m.ProtocolVersion)
	case m.Executable == "" || m.Executable == "." || m.Executable == ".." || strings.ContainsAny(m.Executable, `/\`+"\x00"):
		return fmt.Errorf("manifest %s: executable %q must be a file name inside the plugin folder", m.Name, m.Executable)
	}
	if _, err := m.Checksum(); err != nil {
		return fmt.Errorf("manifest %s: %w", m.Name, err)
	}
	return nil
}

// ValidName reports whether s is a plugin name: 1-64 lowercase letters,
// digits, '_' or '-' (the name --attn and --kv find it by).
func ValidName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range []byte(s) {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

// Checksum returns the decoded SHA-256.
func (m Manifest) Checksum() ([]byte, error) {
	sum, err := hex.DecodeString(m.SHA256)
	if err != nil || len(sum) != sha256.Size || strings.ToLower(m.SHA256) != m.SHA256 {
		return nil, fmt.Errorf("sha256 %q: want %d lowercase hex digits", m.SHA256, 2*sha256.Size)
	}
	return sum, nil
}

// Load reads dir's manifest.
func Load(dir string) (Manifest, error) {
	path := filepath.Join(dir, FileName)
	f, err := os.Open(path)
	if err != nil {
		return Manifest{}, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSize+1))
	if err != nil {
		return Manifest{}, fmt.Errorf("%s: %w", path, err)
	}
	m, err := Parse(data)
	if err != nil {
		return Manifest{}, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// Write validates m and writes it as dir's manifest, through a temporary
// file and a rename so a reader never sees half a manifest.
func Write(dir string, m Manifest) error {
	if err := m.Validate(); err != nil {
		return err
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".plugin-*.json")
	if err != nil {
		return err
	}
	_, werr := tmp.Write(append(data, '\n'))
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("writing manifest in %s: %w", dir, err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, FileName)); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return nil
}

// FileSHA256 returns the lowercase hex SHA-256 of a file.
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
