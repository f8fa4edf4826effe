package config

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/knadh/koanf/v2"

	"github.com/vitamin-go/vitamin/internal/fielderr"
)

// fileDebounce coalesces the bursts of events an editor's save makes.
const fileDebounce = 20 * time.Millisecond

// fileSource is the file layer. It watches the file's directory rather
// than the file, so that it survives editors and tools (and Kubernetes
// ConfigMap volumes) that write a new file and rename it over the old one.
type fileSource struct {
	path     string
	parser   koanf.Parser
	optional bool
	log      *slog.Logger

	mu   sync.Mutex
	last []byte // content last read; nil: never read or missing
	read bool
}

func newFileSource(path, format string, optional bool, log *slog.Logger) (*fileSource, error) {
	p, err := parserFor(path, format)
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fielderr.New(ErrInvalidConfig, "Layers.File", path, "cannot make the path absolute", err)
	}
	return &fileSource{path: abs, parser: p, optional: optional, log: log}, nil
}

func (f *fileSource) String() string { return "file:" + filepath.Base(f.path) }

// readParse reads and parses the file. changed is false when the content is
// the same as last time.
func (f *fileSource) readParse() (m map[string]any, changed bool, err error) {
	b, err := os.ReadFile(f.path)
	missing := errors.Is(err, fs.ErrNotExist)
	if err != nil && !(missing && f.optional) {
		return nil, true, err
	}
	f.mu.Lock()
	changed = !f.read || !bytes.Equal(b, f.last) || (b == nil) != (f.last == nil)
	f.last, f.read = b, true
	f.mu.Unlock()
	if !changed {
		return nil, false, nil
	}
	if missing {
		return map[string]any{}, true, nil
	}
	m, err = f.parser.Unmarshal(b)
	if err != nil {
		return nil, true, fmt.Errorf("parse %s: %w", f.path, err)
	}
	return m, true, nil
}

func (f *fileSource) Load(context.Context) (map[string]any, error) {
	m, _, err := f.readParse()
	return m, err
}

func (f *fileSource) Watch(ctx context.Context, emit func(Update)) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	defer w.Close()
	if err := w.Add(filepath.Dir(f.path)); err != nil {
		return fmt.Errorf("watch %s: %w", filepath.Dir(f.path), err)
	}
	// A change between Load and the start of the watch is not lost.
	f.reload(emit)

	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			// Any event in the directory may change what the path reads
			// (a rename over it, a symlink swap): re-read, and compare.
			_ = ev
			timer.Reset(fileDebounce)
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			f.log.Warn("config file watch error", "file", f.path, "err", err)
			timer.Reset(fileDebounce)
		case <-timer.C:
			f.reload(emit)
		}
	}
}

func (f *fileSource) reload(emit func(Update)) {
	m, changed, err := f.readParse()
	switch {
	case err != nil:
		emit(Update{Err: err})
	case changed:
		emit(Update{Data: m})
	}
}
