package messaging

import (
	"encoding/json"
	"fmt"

	"google.golang.org/protobuf/proto"
)

// Content types the default codec writes and reads.
const (
	ContentTypeJSON     = "application/json"
	ContentTypeProtobuf = "application/protobuf"
	ContentTypeBytes    = "application/octet-stream"
)

// Codec turns payloads into message bodies and back. Implementations must
// be safe for concurrent use.
type Codec interface {
	// Marshal encodes v and says which content type it used.
	Marshal(v any) (data []byte, contentType string, err error)
	// Unmarshal decodes data of the given content type into v.
	Unmarshal(data []byte, contentType string, v any) error
}

// DefaultCodec encodes a proto.Message as protobuf, a []byte as it is, and
// anything else as JSON; it decodes by the Content-Type header (JSON when it
// is missing). It is safe for concurrent use.
type DefaultCodec struct{}

var _ Codec = DefaultCodec{}

// Marshal implements Codec.
func (DefaultCodec) Marshal(v any) ([]byte, string, error) {
	switch v := v.(type) {
	case proto.Message:
		b, err := proto.Marshal(v)
		return b, ContentTypeProtobuf, err
	case []byte:
		return v, ContentTypeBytes, nil
	default:
		b, err := json.Marshal(v)
		return b, ContentTypeJSON, err
	}
}

// Unmarshal implements Codec.
func (DefaultCodec) Unmarshal(data []byte, contentType string, v any) error {
	switch contentType {
	case ContentTypeProtobuf:
		m, ok := v.(proto.Message)
		if !ok {
			return fmt.Errorf("protobuf payload needs a proto.Message, got %T", v)
		}
		return proto.Unmarshal(data, m)
	case ContentTypeBytes:
		p, ok := v.(*[]byte)
		if !ok {
			return fmt.Errorf("octet-stream payload needs a *[]byte, got %T", v)
		}
		*p = append((*p)[:0], data...)
		return nil
	case ContentTypeJSON, "":
		return json.Unmarshal(data, v)
	default:
		return fmt.Errorf("unknown content type %q", contentType)
	}
}
