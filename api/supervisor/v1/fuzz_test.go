package v1

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzDecodeRequest feeds the supervisor's request parser whatever a
// client (or anything that can reach the socket) might send: it must not
// panic, must answer a refused line with InvalidArgument or
// IncompatibleVersion, and must read an accepted request's own encoding
// back as the same request.
func FuzzDecodeRequest(f *testing.F) {
	f.Add([]byte(`{"version":"1.6","op":"version"}` + "\n"))
	f.Add([]byte(`{"version":"1.0","op":"kill","id":"c1","kill":{"signal":9,"all":true}}`))
	f.Add([]byte(`{"version":"1.6","op":"create","id":"c1","create":{"bundle":"/b","log_path":"/l","restore":{}}}`))
	f.Add([]byte(`{"version":"1.6","op":"update","id":"c1","update":{"memory":{"limit":1048576}}}`))
	f.Add([]byte(`{"version":"2.0","op":"list"}`))
	f.Add([]byte(`{"op":`))
	f.Fuzz(func(t *testing.T, line []byte) {
		req, err := DecodeRequest(line)
		if err != nil {
			if err.Code != CodeInvalidArgument && err.Code != CodeIncompatibleVersion {
				t.Fatalf("refused with %s", err)
			}
			return
		}
		if Major(req.Version) != Major(Version) {
			t.Fatalf("accepted version %q", req.Version)
		}
		enc, merr := json.Marshal(req)
		if merr != nil {
			t.Fatalf("an accepted request does not encode: %v", merr)
		}
		again, err := DecodeRequest(enc)
		if err != nil {
			t.Fatalf("its own encoding %s is refused: %v", enc, err)
		}
		if enc2, _ := json.Marshal(again); !bytes.Equal(enc, enc2) {
			t.Fatalf("round trip changed the request:\n%s\n%s", enc, enc2)
		}
	})
}
