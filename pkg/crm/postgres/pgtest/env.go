package pgtest

import "os"

// getenv reads the process environment: test helpers are the one place where the environment
// is the configuration, set by the Makefile and CI.
func getenv(key string) string { return os.Getenv(key) }
