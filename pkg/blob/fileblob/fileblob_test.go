package fileblob_test

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailpipe/mailpipe/pkg/blob"
	"github.com/mailpipe/mailpipe/pkg/blob/blobtest"
	"github.com/mailpipe/mailpipe/pkg/blob/fileblob"
)

func TestConformance(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blob.Store {
		s, err := fileblob.New(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestLayoutAndNoLeftovers(t *testing.T) {
	// given a store
	dir := t.TempDir()
	s, err := fileblob.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	// when one put succeeds and one fails half way
	ref, err := s.Put(t.Context(), "raw/ab/cafe", strings.NewReader("mime"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(t.Context(), "raw/ab/dead", io.MultiReader(strings.NewReader("x"), failing{})); err == nil {
		t.Fatal("failing put succeeded")
	}
	// then the blob is a plain file at root/key, the ref is its file URL, and no temporary file
	// is left behind
	want := filepath.Join(dir, "raw", "ab", "cafe")
	if b, err := os.ReadFile(want); err != nil || string(b) != "mime" {
		t.Fatalf("file %s = %q, %v", want, b, err)
	}
	if ref != "file://"+want {
		t.Errorf("ref = %q, want file://%s", ref, want)
	}
	var files []string
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
		}
		return err
	})
	if len(files) != 1 {
		t.Errorf("files under root = %v, want only %s", files, want)
	}
}

func TestOpen(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		name    string
		url     string
		wantErr error // checked with errors.Is when set
		fails   bool
	}{
		{name: "absolute", url: "file://" + filepath.Join(dir, "blobs")},
		{name: "localhost", url: "file://localhost" + filepath.Join(dir, "blobs2")},
		{name: "relative", url: "file:blobs", fails: true},
		{name: "remote host", url: "file://fileserver/blobs", fails: true},
		{name: "s3 not built in", url: "s3://bucket/prefix", fails: true, wantErr: blob.ErrUnsupportedScheme},
		{name: "no scheme", url: "/var/lib/blobs", fails: true, wantErr: blob.ErrUnsupportedScheme},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, err := blob.Open(t.Context(), tt.url)
			switch {
			case !tt.fails && err != nil:
				t.Fatalf("Open(%q) = %v", tt.url, err)
			case !tt.fails:
				ref, err := s.Put(t.Context(), "k", strings.NewReader("v"))
				if err != nil || !strings.HasPrefix(ref, "file:///") {
					t.Fatalf("Put = %q, %v", ref, err)
				}
			case err == nil:
				t.Fatalf("Open(%q) succeeded, want error", tt.url)
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
				t.Fatalf("Open(%q) = %v, want %v", tt.url, err, tt.wantErr)
			}
		})
	}
}

func TestRefsFromAnotherRootAreRefused(t *testing.T) {
	a, _ := fileblob.New(t.TempDir())
	b, _ := fileblob.New(t.TempDir())
	ref, err := a.Put(t.Context(), "k", strings.NewReader("v"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get(t.Context(), ref); !errors.Is(err, blob.ErrInvalidRef) {
		t.Fatalf("Get of a foreign ref = %v, want ErrInvalidRef", err)
	}
}

type failing struct{}

func (failing) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }
