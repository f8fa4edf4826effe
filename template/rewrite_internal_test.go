package template

import (
	"bytes"
	"io/fs"
	"strings"
	"testing"
)

// TestPBGoRoundTrip: rewritten for the skeleton's own module path, the
// generated protobuf code comes out byte for byte as protoc wrote it, so
// that the descriptor is re-encoded and laid out as protoc-gen-go does it
// (and make proto in a generated project changes nothing).
func TestPBGoRoundTrip(t *testing.T) {
	r, err := newRenamer(skeletonModule)
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	err = fs.WalkDir(Skeleton(), ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || !strings.HasSuffix(name, ".pb.go") {
			return err
		}
		src, err := fs.ReadFile(Skeleton(), name)
		if err != nil {
			return err
		}
		out, err := r.pbGo(src)
		if err != nil {
			return err
		}
		if !bytes.Equal(out, src) {
			t.Errorf("%s changed when rewritten to itself:\n%s", name, out)
		}
		checked++
		return nil
	})
	if err != nil || checked != 2 {
		t.Fatalf("checked %d files (want 2): %v", checked, err)
	}
}
