package messaging

import (
	"encoding/json"
	"fmt"
	"mime"
	"strings"

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
//
// Unmarshal receives the Content-Type header as the publisher wrote it,
// parameters and letter case included ("application/json; charset=utf-8",
// "APPLICATION/JSON"); MediaType reduces it to the media type alone.
type Codec interface {
	// Marshal encodes v and says which content type it used.
	Marshal(v any) (data []byte, contentType string, err error)
	// Unmarshal decodes data of the given content type into v.
	Unmarshal(data []byte, contentType string, v any) error
}

// DefaultCodec encodes a proto.Message as protobuf, a []byte as it is, and
// anything else as JSON; it decodes by the Content-Type header (JSON when it
// is missing). It is safe for concurrent use.
//
// The header is read as a media type (RFC 9110): letter case and
// parameters do not matter, so "application/json; charset=utf-8" and
// "Application/JSON" are JSON. Decoded as JSON: application/json, any
// type with the +json structured-syntax suffix (RFC 6839, such as
// application/vnd.acme.order+json or application/problem+json) and
// text/json, with no charset or a UTF-8 one (utf-8, us-ascii, a subset):
// JSON between systems is UTF-8 (RFC 8259), and another charset is
// refused rather than misread. Decoded as protobuf: application/protobuf,
// application/x-protobuf and application/vnd.google.protobuf. Decoded as
// bytes: application/octet-stream. Anything else fails to decode.
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
	mt, params, err := parseMediaType(contentType)
	if err != nil {
		return err
	}
	switch {
	case mt == ContentTypeProtobuf || mt == "application/x-protobuf" || mt == "application/vnd.google.protobuf":
		m, ok := v.(proto.Message)
		if !ok {
			return fmt.Errorf("protobuf payload needs a proto.Message, got %T", v)
		}
		return proto.Unmarshal(data, m)
	case mt == ContentTypeBytes:
		p, ok := v.(*[]byte)
		if !ok {
			return fmt.Errorf("octet-stream payload needs a *[]byte, got %T", v)
		}
		*p = append((*p)[:0], data...)
		return nil
	case mt == "" || isJSON(mt):
		switch cs := strings.ToLower(params["charset"]); cs {
		case "", "utf-8", "utf8", "us-ascii":
		default:
			return fmt.Errorf("JSON in charset %q: want UTF-8", cs)
		}
		return json.Unmarshal(data, v)
	default:
		return fmt.Errorf("unknown content type %q", contentType)
	}
}

// MediaType returns the media type of a Content-Type header value in
// lower case, without its parameters: "application/json" for
// "Application/JSON; charset=utf-8". It returns "" for an empty value and
// an error for one that is not a media type.
func MediaType(contentType string) (string, error) {
	mt, _, err := parseMediaType(contentType)
	return mt, err
}

func parseMediaType(contentType string) (string, map[string]string, error) {
	if strings.TrimSpace(contentType) == "" {
		return "", nil, nil
	}
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil && mt == "" {
		return "", nil, fmt.Errorf("content type %q: %w", contentType, err)
	}
	// A bad parameter (mime.ErrInvalidMediaParameter) leaves the type
	// usable; the parameters are then ignored.
	return mt, params, nil
}

// isJSON reports whether the lower-case media type mt is JSON.
func isJSON(mt string) bool {
	return mt == ContentTypeJSON || mt == "text/json" ||
		(strings.HasSuffix(mt, "+json") && strings.Contains(mt, "/"))
}
