package cloudblob_test

import (
	"errors"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailpipe/mailpipe/pkg/blob"
	"github.com/mailpipe/mailpipe/pkg/blob/blobtest"
	"github.com/mailpipe/mailpipe/pkg/blob/cloudblob"
)

func newDir(t *testing.T, dir string) *cloudblob.Store {
	t.Helper()
	s, err := cloudblob.NewDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConformanceFile(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blob.Store { return newDir(t, t.TempDir()) })
}

func TestFileLayoutAndNoLeftovers(t *testing.T) {
	// given a store
	dir := t.TempDir()
	s := newDir(t, dir)
	// when one put succeeds and one fails half way
	ref, err := s.Put(t.Context(), "raw/ab/cafe", strings.NewReader("mime"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(t.Context(), "raw/ab/dead", io.MultiReader(strings.NewReader("x"), failing{})); err == nil {
		t.Fatal("failing put succeeded")
	}
	// then the blob is a plain file at root/key with no metadata sidecar, the ref is its file
	// URL (the same refs the earlier hand-written file store made), and no temporary file is
	// left behind
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
		name string
		url  string
		ok   bool
		// for s3 stores, which cannot be reached from the tests: the ref of key "raw/k"
		wantRef string
	}{
		{name: "file absolute", url: "file://" + filepath.Join(dir, "blobs"), ok: true},
		{name: "file localhost", url: "file://localhost" + filepath.Join(dir, "blobs2"), ok: true},
		{name: "file relative", url: "file:blobs"},
		{name: "file dot host", url: "file://./blobs"},
		{name: "file remote host", url: "file://fileserver/blobs"},
		{name: "file query", url: "file://" + dir + "?create_dir=1"},
		{name: "s3 bucket", url: "s3://mail-blobs?region=eu-west-1", ok: true, wantRef: "s3://mail-blobs/raw/k"},
		{name: "s3 path prefix", url: "s3://mail-blobs/prod/mail/?region=eu-west-1", ok: true, wantRef: "s3://mail-blobs/prod/mail/raw/k"},
		{name: "s3 prefix parameter", url: "s3://mail-blobs?prefix=prod/&region=eu-west-1", ok: true, wantRef: "s3://mail-blobs/prod/raw/k"},
		{
			name:    "minio endpoint",
			url:     "s3://mail-blobs/raw-mail?endpoint=http://127.0.0.1:9000&use_path_style=true&region=us-east-1&disable_https=true&hostname_immutable=true",
			ok:      true,
			wantRef: "s3://mail-blobs/raw-mail/raw/k",
		},
		{name: "s3 server-side encryption too", url: "s3://b?region=us-east-1&ssetype=aws:kms&kmskeyid=alias/x", ok: true, wantRef: "s3://b/raw/k"},
		{name: "s3 no bucket", url: "s3:///prefix?region=us-east-1"},
		{name: "s3 prefix twice", url: "s3://b/p?prefix=q/&region=us-east-1"},
		{name: "s3 bad prefix", url: "s3://b/../etc?region=us-east-1"},
		{name: "s3 unknown parameter", url: "s3://b?region=us-east-1&colour=blue"},
		{name: "s3 bad boolean", url: "s3://b?region=us-east-1&use_path_style=maybe"},
		{name: "s3 credentials in url", url: "s3://key:secret@b?region=us-east-1"},
		{name: "other scheme", url: "gs://bucket"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			u, err := url.Parse(tt.url)
			if err != nil {
				t.Fatal(err)
			}
			s, err := cloudblob.Open(t.Context(), u)
			if !tt.ok {
				if err == nil {
					_ = s.Close()
					t.Fatalf("Open(%q) succeeded, want error", tt.url)
				}
				if strings.Contains(err.Error(), "secret") {
					t.Errorf("error %q leaks the credentials", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open(%q) = %v", tt.url, err)
			}
			defer func() { _ = s.Close() }()
			if tt.wantRef != "" {
				// s3 is not reachable here: check the ref mapping, which needs no I/O.
				if got := s.Ref("raw/k"); got != tt.wantRef {
					t.Errorf("Ref = %q, want %q", got, tt.wantRef)
				}
				if k, err := s.Key(tt.wantRef); err != nil || k != "raw/k" {
					t.Errorf("Key(%q) = %q, %v", tt.wantRef, k, err)
				}
				ref, _ := url.Parse(tt.wantRef)
				otherBucket := *ref
				otherBucket.Host = "zz-other"
				for _, bad := range []string{
					otherBucket.String(),
					tt.wantRef + "?versionId=1",
					strings.Replace(tt.wantRef, "raw/k", "raw/../k", 1),
					tt.wantRef + "/",
					"file://" + ref.Path,
				} {
					if _, err := s.Get(t.Context(), bad); !errors.Is(err, blob.ErrInvalidRef) {
						t.Errorf("Get(%q) = %v, want ErrInvalidRef before any request", bad, err)
					}
				}
				return
			}
			ref, err := s.Put(t.Context(), "k", strings.NewReader("v"))
			if err != nil || !strings.HasPrefix(ref, "file:///") {
				t.Fatalf("Put = %q, %v", ref, err)
			}
		})
	}
}

func TestRefsFromAnotherRootAreRefused(t *testing.T) {
	a := newDir(t, t.TempDir())
	b := newDir(t, t.TempDir())
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
