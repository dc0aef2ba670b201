package store

import "sync"

// KeyedMutex is a mutex per key (an object id), created on demand and
// dropped when unused. The zero value is ready.
type KeyedMutex struct {
	mu sync.Mutex
	m  map[string]*keyedEntry // guarded by mu
}

type keyedEntry struct {
	sync.Mutex
	refs int
}

// Lock locks key and returns its unlock.
func (k *KeyedMutex) Lock(key string) func() {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyedEntry{}
	}
	e := k.m[key]
	if e == nil {
		e = &keyedEntry{}
		k.m[key] = e
	}
	e.refs++
	k.mu.Unlock()
	e.Lock()
	return func() {
		e.Unlock()
		k.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}
