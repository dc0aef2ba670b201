package main

import (
	"bufio"
	"bytes"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	configv1 "github.com/berth-cri/berth/api/config/v1"
	"github.com/berth-cri/berth/internal/config"
)

// Every schema key is in exactly one rule, and every rule key is in the
// schema: a new key fails here until someone decides how it reloads.
func TestReloadTable(t *testing.T) {
	schema := schemaKeys()
	seen := map[string]bool{}
	for _, r := range reloadTable {
		if !r.live && r.apply != nil {
			t.Errorf("restart-only rule %v has an apply function", r.keys)
		}
		for _, key := range r.keys {
			if seen[key] {
				t.Errorf("key %q is in two rules", key)
			}
			seen[key] = true
			if !slices.Contains(schema, key) {
				t.Errorf("table key %q is not in the schema", key)
			}
		}
	}
	for _, key := range schema {
		if !seen[key] {
			t.Errorf("schema key %q is not in reloadTable: add it as live (with what re-applies it) or restart-only", key)
		}
	}
}

// A reload keeps restart-only keys at their running value, warning about
// each one that changed, and takes live keys read from the holder as they are.
func TestApplyReloadKeepsRestartOnlyKeys(t *testing.T) {
	running := defaults(t)
	next := defaults(t)
	next.MaxExecOutput = 1 << 20
	next.NRI.PluginRequestTimeout = configv1.Duration{Duration: time.Minute}
	next.StateDir = "/elsewhere"
	next.DefaultRuntime = "other"
	next.CDISpecDirs = []string{"/cdi"}

	var logs bytes.Buffer
	log := logrus.New()
	log.SetOutput(&logs)
	// No rule with an apply function is exercised here: appliers need the
	// real parts (TestReloadOnSIGHUP runs them end to end).
	saved := reloadTable
	reloadTable = slices.DeleteFunc(slices.Clone(reloadTable), func(r reloadRule) bool { return r.apply != nil })
	t.Cleanup(func() { reloadTable = saved })

	got := applyReload(&daemonParts{log: log}, running, next)
	if got.MaxExecOutput != running.MaxExecOutput || got.NRI != running.NRI || got.StateDir != running.StateDir {
		t.Errorf("restart-only keys not kept: max_exec_output %d, nri %+v, state_dir %q", got.MaxExecOutput, got.NRI, got.StateDir)
	}
	if got.DefaultRuntime != "other" || !slices.Equal(got.CDISpecDirs, []string{"/cdi"}) {
		t.Errorf("live keys not taken: default_runtime %q, cdi_spec_dirs %q", got.DefaultRuntime, got.CDISpecDirs)
	}
	for _, key := range []string{"max_exec_output", "nri.plugin_request_timeout", "state_dir"} {
		if !strings.Contains(logs.String(), "key="+key+"\n") {
			t.Errorf("no warning for %s in:\n%s", key, logs.String())
		}
	}
	if n := strings.Count(logs.String(), "changes only at restart"); n != 3 {
		t.Errorf("%d restart warnings, want 3:\n%s", n, logs.String())
	}
}

func defaults(t *testing.T) *configv1.Config {
	t.Helper()
	path := t.TempDir() + "/berth.toml"
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	loaded, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return loaded.Config
}

// mapPlaceholder names the map key in documented paths, as docs/config.md's
// [runtimes.<handler>] heading does.
const mapPlaceholder = "<handler>"

// docKeys are the keys docs/config.md must document: schemaKeys, with a map
// of tables replaced by its tables' keys.
func docKeys() []string {
	var keys []string
	for _, key := range schemaKeys() {
		f := configField(&configv1.Config{}, key)
		if f.Kind() == reflect.Map && f.Type().Elem().Kind() == reflect.Struct {
			for i := range f.Type().Elem().NumField() {
				keys = append(keys, key+"."+mapPlaceholder+"."+tomlName(f.Type().Elem().Field(i)))
			}
			continue
		}
		keys = append(keys, key)
	}
	return keys
}

// ruleFor is the rule of a documented key: its own, or its map's.
func ruleFor(key string) (reloadRule, bool) {
	for _, r := range reloadTable {
		for _, k := range r.keys {
			if k == key || strings.HasPrefix(key, k+".") {
				return r, true
			}
		}
	}
	return reloadRule{}, false
}

// docs/config.md documents every key of the schema and no other, and its
// live column says what the reload table does.
func TestConfigDocs(t *testing.T) {
	documented := parseConfigDocs(t, "../../docs/config.md")
	for _, key := range docKeys() {
		if _, ok := documented[key]; !ok {
			t.Errorf("key %q is not documented in docs/config.md", key)
		}
	}
	want := docKeys()
	for key, live := range documented {
		if !slices.Contains(want, key) {
			t.Errorf("docs/config.md documents %q, which is not in the schema", key)
			continue
		}
		r, _ := ruleFor(key)
		if wantCol := map[bool]string{true: "yes", false: "no"}[r.live]; live != wantCol {
			t.Errorf("docs/config.md: %q is live %q, the reload table says %q", key, live, wantCol)
		}
	}
}

// parseConfigDocs returns each key in the tables of docs/config.md with its
// live column. A "## `[name]`" heading prefixes the keys of its tables with
// "name."; any other heading ends the key tables' prefix.
func parseConfigDocs(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	keys := map[string]string{}
	prefix, liveCol := "", -1
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if h, ok := strings.CutPrefix(line, "## "); ok {
			prefix, liveCol = "", -1
			if name, ok := strings.CutPrefix(h, "`["); ok {
				prefix = strings.TrimSuffix(name, "]`") + "."
			}
			continue
		}
		if !strings.HasPrefix(line, "|") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		switch {
		case cells[0] == "key":
			liveCol = slices.Index(cells, "live")
			if liveCol < 0 {
				t.Errorf("%s: a key table without a live column: %s", path, line)
			}
			continue
		case strings.HasPrefix(cells[0], "---") || liveCol < 0:
			continue
		}
		for _, name := range strings.Split(cells[0], ", ") {
			keys[prefix+strings.Trim(name, "`")] = cells[liveCol]
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(keys) == 0 {
		t.Fatalf("%s: no key tables found", path)
	}
	return keys
}
