package blob_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
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

	_, err = blob.Open(ctx, "s3://bucket/mail")
	fmt.Println(errors.Is(err, blob.ErrUnsupportedScheme))
	fmt.Println(errors.Is(blob.ValidKey("../etc/passwd"), blob.ErrInvalidKey))
	// Output:
	// "Subject: hi\r\n\r\nbody\r\n"
	// true
	// true
}
