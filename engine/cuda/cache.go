package cuda

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// KeyInput is everything that determines a compiled kernel image.
type KeyInput struct {
	Source       string
	Name         string
	Arch         string
	NVRTCVersion string
	Options      []string // the full NVRTC option list (NVRTC.Args)
	// Headers are the in-memory headers (CompileOptions.Headers), include
	// name -> content: editing one must change the key.
	Headers map[string]string
}

// Key is the SHA-256 of the input, hex-encoded. Every field is written with
// its length in front, so no two different inputs can encode alike (e.g.
// moving a character from Source to Name changes the key).
func (k KeyInput) Key() string {
	h := sha256.New()
	put := func(s string) {
		var n [8]byte
		binary.LittleEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	put("longctx-kernel-cache-v1")
	put(k.Source)
	put(k.Name)
	put(k.Arch)
	put(k.NVRTCVersion)
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(k.Options)))
	h.Write(n[:])
	for _, o := range k.Options {
		put(o)
	}
	binary.LittleEndian.PutUint64(n[:], uint64(len(k.Headers)))
	h.Write(n[:])
	for _, name := range sortedKeys(k.Headers) {
		put(name)
		put(k.Headers[name])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Cache stores compiled kernel images on disk, one file per key.
type Cache struct {
	Dir string
}

// DefaultCacheDir is <user cache dir>/longctx/kernels.
func DefaultCacheDir() (string, error) {
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("kernel cache: %w", err)
	}
	return filepath.Join(base, "longctx", "kernels"), nil
}

func validKey(key string) error {
	if len(key) != 2*sha256.Size {
		return fmt.Errorf("kernel cache: key %q is not a hex SHA-256", key)
	}
	if _, err := hex.DecodeString(key); err != nil {
		return fmt.Errorf("kernel cache: key %q is not a hex SHA-256", key)
	}
	return nil
}

func (c *Cache) path(key string) string { return filepath.Join(c.Dir, key+".bin") }

// Get returns the image stored under key; ok is false when there is none.
func (c *Cache) Get(key string) (image []byte, ok bool, err error) {
	if err := validKey(key); err != nil {
		return nil, false, err
	}
	b, err := os.ReadFile(c.path(key))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("kernel cache: %w", err)
	}
	return b, true, nil
}

// Put stores image under key. It writes a temporary file in the same folder
// and renames it, so a reader (or a crash) never sees a partial image.
func (c *Cache) Put(key string, image []byte) (err error) {
	if err := validKey(key); err != nil {
		return err
	}
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return fmt.Errorf("kernel cache: %w", err)
	}
	f, err := os.CreateTemp(c.Dir, key+".tmp-*")
	if err != nil {
		return fmt.Errorf("kernel cache: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(image); err != nil {
		return fmt.Errorf("kernel cache: writing %s: %w", f.Name(), err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("kernel cache: syncing %s: %w", f.Name(), err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("kernel cache: closing %s: %w", f.Name(), err)
	}
	if err = os.Rename(f.Name(), c.path(key)); err != nil {
		return fmt.Errorf("kernel cache: %w", err)
	}
	return nil
}

// CompileCached returns the image for src from the cache, compiling and
// storing it on a miss. hit reports whether the cache served it.
func CompileCached(n *NVRTC, c *Cache, src, name string, opts CompileOptions) (image []byte, hit bool, err error) {
	key := n.cacheKey(src, name, opts)
	if image, ok, err := c.Get(key); err != nil {
		return nil, false, err
	} else if ok {
		return image, true, nil
	}
	image, _, err = n.Compile(src, name, opts)
	if err != nil {
		return nil, false, err
	}
	if err := c.Put(key, image); err != nil {
		return nil, false, err
	}
	return image, false, nil
}

// cacheKey is the key under which CompileCached stores src compiled with
// opts by n.
func (n *NVRTC) cacheKey(src, name string, opts CompileOptions) string {
	return KeyInput{
		Source:       src,
		Name:         name,
		Arch:         opts.Arch,
		NVRTCVersion: n.VersionString(),
		Options:      n.Args(opts),
		Headers:      opts.Headers,
	}.Key()
}
