package ingest_test

import (
	"context"
	"maps"
	"sync"
)

// memIndex is an in-memory thread index for the tests.
type memIndex struct {
	mu sync.Mutex
	m  map[string]string
}

func newMemIndex(init map[string]string) *memIndex {
	m := map[string]string{}
	maps.Copy(m, init)
	return &memIndex{m: m}
}

func (x *memIndex) Lookup(_ context.Context, id string) (string, bool, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	k, ok := x.m[id]
	return k, ok, nil
}

func (x *memIndex) Remember(_ context.Context, id, key string) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.m[id] = key
	return nil
}

func (x *memIndex) get(id string) (string, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	k, ok := x.m[id]
	return k, ok
}

func (x *memIndex) len() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return len(x.m)
}
