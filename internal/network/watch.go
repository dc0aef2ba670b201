package network

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"
)

// watchInterval is how often Watch looks at the conf dir. A second keeps
// NetworkReady close to the moment a CNI installer writes its config, and
// one ReadDir a second costs nothing measurable.
const watchInterval = time.Second

// Watch reloads the configs whenever the conf dir changes, until ctx ends,
// so NetworkReady follows the dir without restarting berthd. It polls
// instead of using inotify: the dir may not exist yet, may be replaced by a
// symlink swap, and its files may be rewritten in place; a poll of names,
// sizes and times covers all of these with no watch descriptors to manage.
// The plugin dirs' times are part of what it watches, to notice binaries
// that arrive after their config.
func (m *Manager) Watch(ctx context.Context) {
	t := time.NewTicker(m.watchEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		m.mu.RLock()
		last := m.loadedFrom
		m.mu.RUnlock()
		if m.fingerprint() != last {
			m.reload()
		}
	}
}

// fingerprint summarises the conf dir (each entry's name, size and change
// time; a subdirectory's time changes when plugin files are added to it) and
// the plugin dirs (their times change when a binary is added or renamed in).
func (m *Manager) fingerprint() string {
	entries, err := os.ReadDir(m.opts.ConfDir)
	if err != nil {
		return "error: " + err.Error()
	}
	var b strings.Builder
	for _, d := range m.cni.Load().Path {
		if info, err := os.Stat(d); err == nil {
			fmt.Fprintf(&b, "%s:%d;", d, info.ModTime().UnixNano())
		}
	}
	for _, e := range entries {
		// Stat follows symlinks, so a retargeted link counts as a change.
		info, err := os.Stat(m.opts.ConfDir + "/" + e.Name())
		if err != nil {
			fmt.Fprintf(&b, "%s:?;", e.Name())
			continue
		}
		fmt.Fprintf(&b, "%s:%d:%d;", e.Name(), info.Size(), info.ModTime().UnixNano())
	}
	return b.String()
}
