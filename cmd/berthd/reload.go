package main

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/sirupsen/logrus"

	configv1 "github.com/berth-cri/berth/api/config/v1"
	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/imagepolicy"
)

// reloadRule says what a SIGHUP reload does with some config keys (dotted
// TOML paths, as docs/config.md names them).
type reloadRule struct {
	keys []string
	// live keys take effect at the reload; the others are restart-only:
	// warned about when they change and kept at their running value, so the
	// config holder (and verbose Status, which shows it) tells the truth.
	live bool
	// apply re-applies live keys to the parts that copied them at start.
	// nil for keys read from the config holder at each use. On error the
	// rule's keys keep their running value.
	apply func(p *daemonParts, cfg *configv1.Config) error
}

// reloadTable covers every key of the schema, no more (TestReloadTable walks
// configv1.Config's toml tags; TestConfigDocs checks docs/config.md's live
// column against it). Rules run in this order.
var reloadTable = []reloadRule{
	// Resolved or bound once at start: sockets, directories that hold
	// state, the cgroup driver records were made with, loaded profiles,
	// the CRIU probed (its version decides what checkpoints can do).
	{keys: []string{"version", "listen", "socket_group", "root_dir", "state_dir", "state_dir_tmpfs",
		"cgroup_driver", "apparmor_default_profile", "metrics_address", "criu_path"}},
	// Copied into the container manager and the streaming server at start.
	{keys: []string{"max_container_log_line_size", "stream_server_address", "stream_server_port",
		"stream_idle_timeout", "stream_tls_cert", "stream_tls_key", "max_exec_output"}},
	// The download semaphore is sized once; the conf dir is being watched.
	{keys: []string{"registry.max_concurrent_downloads", "cni.conf_dir"}},
	// NRI's socket and plugins are started once.
	{keys: []string{"nri.enable", "nri.socket_path", "nri.plugin_path", "nri.plugin_config_path",
		"nri.plugin_registration_timeout", "nri.plugin_request_timeout"}},

	{keys: []string{"log_level", "log_format"}, live: true, apply: func(p *daemonParts, cfg *configv1.Config) error {
		applyLogSettings(p.log, cfg)
		return nil
	}},
	// Sandbox creation, container creation and CDI injection read these
	// from the holder each time.
	{keys: []string{"default_runtime", "cdi_spec_dirs", "checkpoint_images"}, live: true},
	// Handlers are read from the holder too; their pause images, like the
	// global one, must also be re-pinned.
	{keys: []string{"sandbox_image", "runtimes"}, live: true, apply: func(p *daemonParts, cfg *configv1.Config) error {
		return p.images.SetPinned(sandboxImages(cfg))
	}},
	{keys: []string{"registry.config_path", "registry.auth_file"}, live: true, apply: func(p *daemonParts, cfg *configv1.Config) error {
		return p.images.Reload(registryOptions(cfg))
	}},
	{keys: []string{"registry.image_pull_progress_timeout"}, live: true, apply: func(p *daemonParts, cfg *configv1.Config) error {
		p.images.SetPullProgressTimeout(cfg.Registry.ImagePullProgressTimeout.Duration)
		return nil
	}},
	{keys: []string{"registry.image_policy"}, live: true, apply: func(p *daemonParts, cfg *configv1.Config) error {
		return p.reloadImagePolicy(cfg.Registry.ImagePolicy)
	}},
	{keys: []string{"cni.bin_dirs"}, live: true, apply: func(p *daemonParts, cfg *configv1.Config) error {
		return p.network.SetBinDirs(cfg.CNI.BinDirs)
	}},
}

// reload re-reads the configuration on SIGHUP and applies it by
// reloadTable. An invalid new config is logged and the old one kept whole.
func (p *daemonParts) reload(configPath string) {
	loaded, err := config.Load(configPath)
	if err != nil {
		p.log.WithError(err).Error("reload: keeping the current config")
		return
	}
	p.cfg.Set(applyReload(p, p.cfg.Get(), loaded.Config))
	p.log.WithField("config", loaded.Files).Info("reloaded the config")
}

// applyReload applies next over running by reloadTable and returns the
// config now in force: next, but with the running value of every key that
// did not take effect. Live rules' appliers run at every reload, changed or
// not, since the files they name (auth file, image policy) may have changed.
func applyReload(p *daemonParts, running, next *configv1.Config) *configv1.Config {
	for _, r := range reloadTable {
		if !r.live {
			for _, key := range r.keys {
				if keepKey(running, next, key) {
					p.log.WithField("key", key).Warn("reload: this key changes only at restart; keeping the running value until then")
				}
			}
			continue
		}
		if r.apply == nil {
			continue
		}
		if err := r.apply(p, next); err != nil {
			p.log.WithError(err).WithField("keys", r.keys).Error("reload: keeping the running values of these keys")
			for _, key := range r.keys {
				keepKey(running, next, key)
			}
		}
	}
	return next
}

// keepKey sets key in next to its value in running and reports whether it
// had changed.
func keepKey(running, next *configv1.Config, key string) bool {
	from, to := configField(running, key), configField(next, key)
	changed := !reflect.DeepEqual(from.Interface(), to.Interface())
	to.Set(from)
	return changed
}

// configField is the field of c whose dotted TOML path is key. It panics on
// a key not in the schema: TestReloadTable keeps the table to real keys.
func configField(c *configv1.Config, key string) reflect.Value {
	v := reflect.ValueOf(c).Elem()
	for _, name := range strings.Split(key, ".") {
		f, ok := fieldByTOML(v.Type(), name)
		if !ok {
			panic(fmt.Sprintf("config key %q is not in the schema", key))
		}
		v = v.FieldByIndex(f.Index)
	}
	return v
}

func fieldByTOML(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		if f := t.Field(i); tomlName(f) == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func tomlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
	return name
}

// schemaKeys lists every key of configv1.Config as a dotted TOML path.
// Tables of fixed keys ([registry]) are walked; a map of tables
// ([runtimes.<handler>]) is one key, reloaded as a whole.
func schemaKeys() []string {
	var keys []string
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for i := range t.NumField() {
			f := t.Field(i)
			key := prefix + tomlName(f)
			if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeFor[configv1.Duration]() {
				walk(f.Type, key+".")
				continue
			}
			keys = append(keys, key)
		}
	}
	walk(reflect.TypeFor[configv1.Config](), "")
	return keys
}

// reloadImagePolicy reads the image policy again (its file may have changed
// even when the path did not); on error the policy in force stays.
func (p *daemonParts) reloadImagePolicy(path string) error {
	if path == "" {
		if p.policy.Policy() != nil {
			p.log.Warn("reload: image policy removed; every image is accepted")
		}
		p.policy.SetPolicy(nil)
		return nil
	}
	pol, err := imagepolicy.Load(path)
	if err != nil {
		return err
	}
	p.policy.SetPolicy(pol)
	p.log.WithFields(logrus.Fields{"path": pol.Path, "version": pol.Version}).Info("reload: image policy")
	return nil
}
