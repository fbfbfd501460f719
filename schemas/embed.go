// Package schemas embeds the Avro schemas of mailpipe's Kafka topics, one .avsc file per topic
// version, and the last released copies used for the backward-compatibility check. It exists as
// its own module only because //go:embed cannot reach files outside a module's directory.
package schemas

import (
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strings"
)

// FS holds the current schemas as <topic>.avsc at its root.
//
//go:embed *.avsc
var FS embed.FS

// Released holds the last released schemas as released/<topic>.avsc. A new schema must stay
// backward compatible with its released copy: a reader using the new schema must decode records
// written with the released one.
//
//go:embed released/*.avsc
var Released embed.FS

// Topics lists the topics that have a schema, sorted.
func Topics() []string {
	entries, err := fs.ReadDir(FS, ".")
	if err != nil {
		// The embedded FS is built at compile time; a read error here is a build defect.
		panic(fmt.Sprintf("reading embedded schemas: %v", err))
	}
	var topics []string
	for _, e := range entries {
		if name, ok := strings.CutSuffix(e.Name(), ".avsc"); ok {
			topics = append(topics, name)
		}
	}
	sort.Strings(topics)
	return topics
}

// Source returns the schema text of topic's current schema.
func Source(topic string) (string, error) {
	b, err := FS.ReadFile(topic + ".avsc")
	if err != nil {
		return "", fmt.Errorf("reading schema of topic %q: %w", topic, err)
	}
	return string(b), nil
}

// ReleasedSource returns the schema text of topic's last released schema, and false when the
// topic has never been released.
func ReleasedSource(topic string) (string, bool) {
	b, err := Released.ReadFile("released/" + topic + ".avsc")
	if err != nil {
		return "", false
	}
	return string(b), true
}
