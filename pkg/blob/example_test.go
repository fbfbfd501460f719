package blob_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/mailpipe/mailpipe/pkg/blob"
)

func ExampleOpen() {
	dir, err := os.MkdirTemp("", "blobs")
	if err != nil {
		panic(err)
	}
	defer func() { _ = os.RemoveAll(dir) }()
	ctx := context.Background()

	store, err := blob.Open(ctx, "file://"+dir)
	if err != nil {
		panic(err)
	}
	ref, err := store.Put(ctx, "raw/2b1f", strings.NewReader("Subject: hi\r\n\r\nbody\r\n"))
	if err != nil {
		panic(err)
	}
	// The ref travels in the Kafka record; any stage with the same store reads it back.
	rc, err := store.Get(ctx, ref)
	if err != nil {
		panic(err)
	}
	defer func() { _ = rc.Close() }()
	b, _ := io.ReadAll(rc)
	fmt.Printf("%q\n", b)

	_, err = blob.Open(ctx, "gs://bucket/mail")
	fmt.Println(errors.Is(err, blob.ErrUnsupportedScheme))
	fmt.Println(errors.Is(blob.ValidKey("../etc/passwd"), blob.ErrInvalidKey))
	// Output:
	// "Subject: hi\r\n\r\nbody\r\n"
	// true
	// true
}

func ExampleConfig_Open() {
	dir, err := os.MkdirTemp("", "blobs")
	if err != nil {
		panic(err)
	}
	defer func() { _ = os.RemoveAll(dir) }()
	ctx := context.Background()

	// MAILPIPE_BLOB_URL and MAILPIPE_BLOB_KEYS; in production the key is awskms:// or
	// hashivault://, and an older key stays listed after the new one until it is retired.
	cfg := blob.Config{
		URL:  "file://" + dir,
		Keys: []string{"2026-11=base64key://smGbjm71Nxd1Ig5FS0wj9SlbzAIrnolCz9bQQ6uAhl4="},
	}
	store, err := cfg.Open(ctx)
	if err != nil {
		panic(err)
	}
	defer func() { _ = store.(io.Closer).Close() }()
	ref, err := store.Put(ctx, "raw/2b1f", strings.NewReader("Subject: secret\r\n\r\nbody\r\n"))
	if err != nil {
		panic(err)
	}
	fmt.Println(strings.TrimPrefix(ref, "file://"+dir))
	onDisk, _ := os.ReadFile(filepath.Join(dir, "raw", "2b1f"))
	fmt.Println(strings.Contains(string(onDisk), "secret"))
	// Output:
	// /raw/2b1f?kid=2026-11
	// false
}
