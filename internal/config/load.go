// Package config loads berthd's configuration: the embedded defaults, then the
// main file, then its drop-ins, and validates the result. Every error names
// the file and the key it is about.
package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"

	configv1 "github.com/berth-cri/berth/api/config/v1"
)

// DefaultPath is read when --config is not given and the file exists.
const DefaultPath = "/etc/berth/berth.toml"

// DropInDir is the directory, beside the main file, whose *.toml files are
// merged over it in lexical order.
const DropInDir = "berth.d"

// DefaultSource names the embedded defaults in error messages.
const DefaultSource = "<embedded defaults>"

// Loaded is a merged configuration and where each key came from.
type Loaded struct {
	Config *configv1.Config
	// Files are the files merged over the defaults, in order.
	Files []string
	// origin maps a dotted key ("runtimes.runc.type") to the file that set it last.
	origin map[string]string
}

// Origin is the file that set key last, or DefaultSource.
func (l *Loaded) Origin(key string) string {
	for k := originKey(key); k != ""; {
		if f, ok := l.origin[k]; ok {
			return f
		}
		i := strings.LastIndexByte(k, '.')
		if i < 0 {
			break
		}
		k = k[:i]
	}
	return DefaultSource
}

// Load reads the configuration. path is the --config flag: "" means
// DefaultPath if it exists, else the embedded defaults alone; a path that was
// given explicitly must exist.
func Load(path string) (*Loaded, error) {
	l := &Loaded{Config: &configv1.Config{}, origin: map[string]string{}}
	if err := l.merge(DefaultSource, configv1.DefaultTOML); err != nil {
		return nil, fmt.Errorf("embedded defaults are broken: %w", err)
	}
	explicit := path != ""
	if !explicit {
		path = DefaultPath
	}
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		if err := l.merge(path, string(data)); err != nil {
			return nil, err
		}
		l.Files = append(l.Files, path)
	case errors.Is(err, os.ErrNotExist) && !explicit:
		// No file at the default path: the defaults and the default drop-in dir.
	default:
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	dropins, err := filepath.Glob(filepath.Join(filepath.Dir(path), DropInDir, "*.toml"))
	if err != nil {
		return nil, fmt.Errorf("config drop-ins: %w", err)
	}
	sort.Strings(dropins)
	for _, f := range dropins {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("config %s: %w", f, err)
		}
		if err := l.merge(f, string(data)); err != nil {
			return nil, err
		}
		l.Files = append(l.Files, f)
	}
	if err := l.validate(); err != nil {
		return nil, err
	}
	return l, nil
}

// merge decodes one file over the configuration so far. A key it sets
// replaces the previous value; a [runtimes.<name>] table it names replaces
// that handler as a whole, so a drop-in never leaves a handler half old, half
// new.
func (l *Loaded) merge(source, data string) error {
	var probe struct {
		Runtimes map[string]toml.Primitive `toml:"runtimes"`
	}
	if _, err := toml.Decode(data, &probe); err != nil {
		return decodeError(source, err)
	}
	for name := range probe.Runtimes {
		delete(l.Config.Runtimes, name)
		// The replaced handler's keys came from an earlier file: forget
		// where, or an error about a key this file left out would blame
		// that file (fuzzing found "[runtimes.runc]" blamed on the defaults).
		prefix := originKey("runtimes." + name + ".")
		for k := range l.origin {
			if strings.HasPrefix(k, prefix) {
				delete(l.origin, k)
			}
		}
	}
	md, err := toml.Decode(data, l.Config)
	if err != nil {
		return decodeError(source, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return fmt.Errorf("config %s: unknown key %q (see docs/config.md for the keys berthd knows)", source, keys[0])
	}
	for _, k := range md.Keys() {
		// Joined unquoted, as validate spells keys: String() quotes a part
		// like "" or "a.b", and the lookup missed (fuzzing found
		// [runtimes.""] blamed on the defaults).
		l.origin[originKey(strings.Join(k, "."))] = source
	}
	return nil
}

// originKey is how origin spells a dotted key: lower-case, because the
// decoder matches struct keys case-insensitively and a file may set
// "Registry.Image_Pull_Progress_Timeout" (fuzzing found one blamed on the
// defaults). Two handlers differing only in case then share an origin,
// which only blurs which file an error blames.
func originKey(k string) string { return strings.ToLower(k) }

func decodeError(source string, err error) error {
	var perr toml.ParseError
	if errors.As(err, &perr) {
		msg := perr.Message
		if perr.Position.Line > 0 {
			msg = fmt.Sprintf("line %d: %s", perr.Position.Line, msg)
		}
		if perr.LastKey != "" {
			return fmt.Errorf("config %s: key %q: %s", source, perr.LastKey, msg)
		}
		return fmt.Errorf("config %s: %s", source, msg)
	}
	// Type mismatches come as plain errors that already name line and key.
	return fmt.Errorf("config %s: %s", source, strings.TrimPrefix(err.Error(), "toml: "))
}
