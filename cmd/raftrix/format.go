package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// jsonKV is the --json form of a key-value. Keys and values are bytes: valid
// UTF-8 is printed as a string, anything else as base64 in the *_base64
// field, so that no byte is lost or mangled.
type jsonKV struct {
	Key            *string `json:"key,omitempty"`
	KeyBase64      *string `json:"key_base64,omitempty"`
	Value          *string `json:"value,omitempty"`
	ValueBase64    *string `json:"value_base64,omitempty"`
	CreateRevision int64   `json:"create_revision"`
	ModRevision    int64   `json:"mod_revision"`
	Version        int64   `json:"version"`
}

// writeJSONKV writes kv as one line of JSON.
func writeJSONKV(w io.Writer, kv *pb.KeyValue, keyOnly bool) error {
	return writeJSONLine(w, newJSONKV(kv, keyOnly))
}

func newJSONKV(kv *pb.KeyValue, keyOnly bool) jsonKV {
	j := jsonKV{CreateRevision: kv.GetCreateRevision(), ModRevision: kv.GetModRevision(), Version: kv.GetVersion()}
	j.Key, j.KeyBase64 = jsonBytes(kv.GetKey())
	if !keyOnly {
		j.Value, j.ValueBase64 = jsonBytes(kv.GetValue())
	}
	return j
}

// writeJSONLine writes v as one line of JSON.
func writeJSONLine(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false) // keys like "a<b" stay readable
	return enc.Encode(v)
}

func jsonBytes(b []byte) (text, b64 *string) {
	if utf8.Valid(b) {
		s := string(b)
		return &s, nil
	}
	s := base64.StdEncoding.EncodeToString(b)
	return nil, &s
}

// printableKey shows a key in a table: as is when it is plain printable
// ASCII, Go-quoted otherwise, so that binary split keys stay readable. A
// space is escaped too, so that a table row splits into columns on spaces.
func printableKey(k []byte) string {
	for _, c := range k {
		if c <= ' ' || c > '~' || c == '"' {
			return strings.ReplaceAll(fmt.Sprintf("%q", k), " ", `\x20`)
		}
	}
	return string(k)
}

// humanBytes formats a byte count with binary units.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}
