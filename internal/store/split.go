package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	"github.com/berth-cri/berth/internal/atomicfile"
)

// A record may be kept in two files: its config, the fields that no
// longer change once the object is settled (a container created, a
// sandbox ready), in <id>.config.json, plain indented JSON written once,
// which an operator can read with cat; and its status, the fields that
// still change (state, pids, exit), in the record file <id>.json, so a
// state change rewrites a few hundred bytes, not the CRI config. An
// object still being created keeps everything in its record file: what
// its config will be is not final yet.
//
// Records written before the split (everything in <id>.json) load as
// they are and are split at load (migrate). A crash between the two
// writes of the first settled Put leaves the config file and the whole
// record file, which load as the whole record; Delete removes the record
// file first, so a config file without one is a leftover, removed at
// load.

// configSuffix ends the name of a record's config file.
const configSuffix = ".config.json"

// Split has the records of r kept as config and status from now on:
// configKeys are the JSON keys of the config (each must name a field of
// T), settled reports a record whose config is final. Call it before the
// records are used.
func (r *Records[T]) Split(configKeys []string, settled func(*T) bool) error {
	keys := map[string]bool{}
	for _, k := range configKeys {
		keys[k] = true
	}
	codec, err := newSplitCodec(reflect.TypeFor[T](), keys)
	if err != nil {
		return fmt.Errorf("store %s: %w", r.dir, err)
	}
	r.codec = codec
	r.settled = settled
	r.configWritten = map[string]bool{}
	return nil
}

// splitCodec encodes a record's config and status parts directly from the
// record: each part is a struct type made (once) of the record's fields
// that belong to it, with their JSON tags, so a status change encodes only
// the status fields, not the whole record with its CRI config.
type splitCodec struct {
	config, status part
}

type part struct {
	typ    reflect.Type
	fields []int // the record's field index for each field of typ
}

func newSplitCodec(rec reflect.Type, configKeys map[string]bool) (*splitCodec, error) {
	var config, status []reflect.StructField
	c := &splitCodec{}
	found := map[string]bool{}
	for i := range rec.NumField() {
		f := rec.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !f.IsExported() || name == "-" {
			continue // encoding/json skips these too
		}
		if f.Anonymous {
			return nil, fmt.Errorf("record field %s is embedded: a split record lists its fields itself", f.Name)
		}
		if name == "" {
			name = f.Name
		}
		f.Index, f.Offset = nil, 0
		if configKeys[name] {
			found[name] = true
			config = append(config, f)
			c.config.fields = append(c.config.fields, i)
		} else {
			status = append(status, f)
			c.status.fields = append(c.status.fields, i)
		}
	}
	for k := range configKeys {
		if !found[k] {
			return nil, fmt.Errorf("config key %q is no field of the record", k)
		}
	}
	c.config.typ, c.status.typ = reflect.StructOf(config), reflect.StructOf(status)
	return c, nil
}

// value copies p's fields of rec into a value of p's type.
func (p part) value(rec reflect.Value) any {
	v := reflect.New(p.typ).Elem()
	for i, idx := range p.fields {
		v.Field(i).Set(rec.Field(idx))
	}
	return v.Addr().Interface()
}

func (r *Records[T]) configPath(id string) string { return filepath.Join(r.dir, id+configSuffix) }

// encodeStatus is the status part of record v, a *T.
func (c *splitCodec) encodeStatus(v any) ([]byte, error) {
	return json.Marshal(c.status.value(reflect.ValueOf(v).Elem()))
}

// writeConfigOnce writes the config file of settled record id unless it
// is written already. The caller holds r.mu.
func (r *Records[T]) writeConfigOnce(id string, v *T) error {
	if r.configWritten[id] {
		return nil
	}
	b, err := json.MarshalIndent(r.codec.config.value(reflect.ValueOf(v).Elem()), "", "  ")
	if err != nil {
		return fmt.Errorf("encode record %s: %w", id, err)
	}
	// Flushed behind, like the record file: see Put.
	p := r.configPath(id)
	if err := atomicfile.WriteVolatile(p, append(b, '\n'), 0o600); err != nil {
		return err
	}
	atomicfile.SyncBehind(p, r.dir)
	r.configWritten[id] = true
	return nil
}

// withConfig adds the config of record id, if it has one, to its status
// data (status fields win: after a crash mid-migration both hold them).
func (r *Records[T]) withConfig(id string, status []byte) ([]byte, bool, error) {
	if r.codec == nil {
		return status, false, nil
	}
	config, err := os.ReadFile(r.configPath(id))
	if errors.Is(err, os.ErrNotExist) {
		return status, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("record %s: config: %w", id, err)
	}
	var fields, st map[string]json.RawMessage
	if err := json.Unmarshal(config, &fields); err != nil {
		return nil, false, fmt.Errorf("record %s: config is corrupt: %w", id, err)
	}
	if err := json.Unmarshal(status, &st); err != nil {
		return nil, false, fmt.Errorf("record %s is corrupt: %w", id, err)
	}
	for k, v := range st {
		fields[k] = v
	}
	data, err := json.Marshal(fields)
	return data, true, err
}

// migrate splits, at load, the settled records still whole; one that
// fails is split at its next Put. It also removes config files whose
// record file is gone.
func (r *Records[T]) migrate(records map[string]*T, names []string) {
	if r.codec == nil {
		return
	}
	for _, name := range names {
		id, ok := strings.CutSuffix(name, configSuffix)
		if ok && records[id] == nil && !atomicfile.IsTemp(name) {
			if _, err := os.Stat(filepath.Join(r.dir, id+".json")); errors.Is(err, os.ErrNotExist) {
				os.Remove(filepath.Join(r.dir, name))
			}
		}
	}
	for id, v := range records {
		if !r.configWritten[id] && r.settled(v) {
			r.Put(id, v)
		}
	}
}

// RawJSON is a JSON document kept as it is inside a record (a CRI config,
// as protojson wrote it), so that the record's config file shows it as
// JSON, not as base64. Records written before held such documents as
// []byte, which encoding/json writes as a base64 string: those still
// decode.
type RawJSON []byte

// MarshalJSON writes the document itself (encoding/json compacts it).
func (r RawJSON) MarshalJSON() ([]byte, error) {
	if len(r) == 0 {
		return []byte("null"), nil
	}
	return r, nil
}

// UnmarshalJSON keeps the document, or decodes the base64 string of an
// older record.
func (r *RawJSON) UnmarshalJSON(b []byte) error {
	switch {
	case string(b) == "null":
		*r = nil
	case len(b) > 0 && b[0] == '"':
		var old []byte
		if err := json.Unmarshal(b, &old); err != nil {
			return err
		}
		*r = old
	default:
		*r = append((*r)[:0], b...)
	}
	return nil
}
